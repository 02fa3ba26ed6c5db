//! Compact, stable text forms of messages and entries for scenario output.

use consensus::raft::{
    AppendEntriesResponse, Entry, EntryPayload, Membership, Message, MessageBody,
};

pub(crate) fn entry(entry: &Entry) -> String {
    format!("{}@{} {}", entry.index, entry.term, payload(&entry.payload))
}

pub(crate) fn payload(payload: &EntryPayload) -> String {
    match payload {
        EntryPayload::Blank => "blank".into(),
        EntryPayload::Command(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        EntryPayload::Membership(membership) => self::membership(membership),
    }
}

pub(crate) fn membership(membership: &Membership) -> String {
    let ids = |set: &std::collections::BTreeSet<consensus::raft::NodeId>| {
        set.iter()
            .map(|id| id.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if membership.learners.is_empty() {
        format!("voters=({})", ids(&membership.voters))
    } else {
        format!(
            "voters=({}) learners=({})",
            ids(&membership.voters),
            ids(&membership.learners)
        )
    }
}

fn entries(entries: &[Entry]) -> String {
    let shown: Vec<String> = entries.iter().map(entry).collect();
    format!("[{}]", shown.join(", "))
}

pub(crate) fn message(message: &Message) -> String {
    let head = format!(
        "{}->{} {} term={}",
        message.from.0,
        message.to.0,
        message.rpc_name(),
        message.term
    );
    let detail = detail(&message.body);
    if detail.is_empty() {
        head
    } else {
        format!("{head} {detail}")
    }
}

fn detail(body: &MessageBody) -> String {
    match body {
        MessageBody::AppendEntries(request) => format!(
            "prev={}@{} commit={} entries={}",
            request.prev_log_index,
            request.prev_log_term,
            request.leader_commit,
            entries(&request.entries)
        ),
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index }) => {
            format!("accepted match={match_index}")
        }
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
            rejected_prev_index,
            hint,
        }) => format!(
            "rejected prev={rejected_prev_index} hint=(term={} first={})",
            hint.conflict_term
                .map_or("none".to_string(), |term| term.to_string()),
            hint.first_index
        ),
        MessageBody::RequestVote(request) => format!(
            "last={}@{}{}",
            request.last_log_index,
            request.last_log_term,
            if request.transfer { " transfer" } else { "" }
        ),
        MessageBody::RequestVoteResponse(response) => if response.granted {
            "granted"
        } else {
            "rejected"
        }
        .to_string(),
        MessageBody::InstallSnapshot(chunk) => format!(
            "snapshot={}@{} offset={} len={} total={}{}",
            chunk.meta.last_index,
            chunk.meta.last_term,
            chunk.offset,
            chunk.data.len(),
            chunk.total,
            if chunk.is_last() { " last" } else { "" }
        ),
        MessageBody::InstallSnapshotResponse(response) => format!(
            "snapshot={} next={}{}{}",
            response.snapshot_index,
            response.next_offset,
            if response.gap { " gap" } else { "" },
            if response.done { " done" } else { "" }
        ),
        MessageBody::Heartbeat(heartbeat) => {
            format!(
                "commit={} read_round={}",
                heartbeat.commit, heartbeat.read_round
            )
        }
        MessageBody::HeartbeatResponse(response) => format!("read_round={}", response.read_round),
        MessageBody::TimeoutNow => String::new(),
    }
}
