//! Versions kept (SPEC §5 `max_versions`), `history`, reading an old
//! version, `list --shared`, and what deletes and snapshots do to them.

use super::tests::{Fixture, ALICE, BOB, CAROL};
use crate::protocol::{
    Decision, Operation, Response, SealedSecret, SharedSummary, VaultError, VaultQuery, WrappedKey,
};
use consensus::state_machine::StateMachine;

fn history(fixture: &Fixture, caller: &str, owner: Option<&str>, name: &str) -> Vec<u64> {
    match fixture.ask(VaultQuery::History {
        caller: caller.into(),
        owner: owner.map(str::to_string),
        name: name.into(),
    }) {
        Ok(Response::History { versions, .. }) => {
            versions.iter().map(|version| version.version).collect()
        }
        other => panic!("history: {other:?}"),
    }
}

fn read_version(
    fixture: &Fixture,
    caller: &str,
    owner: Option<&str>,
    name: &str,
    version: u64,
) -> Result<Vec<u8>, VaultError> {
    match fixture.ask(VaultQuery::Version {
        caller: caller.into(),
        owner: owner.map(str::to_string),
        name: name.into(),
        version,
    }) {
        Ok(Response::Secret(record)) => {
            assert_eq!(record.version, version);
            Ok(record.sealed.0)
        }
        Ok(other) => panic!("read version: {other:?}"),
        Err(error) => Err(error),
    }
}

fn share(fixture: &mut Fixture, name: &str, with: &str) {
    let op = Operation::Share {
        name: name.into(),
        grantee: with.into(),
        wrapped_key: WrappedKey(vec![7; 8]),
    };
    assert_eq!(fixture.run(ALICE, None, op), Ok(Response::Shared));
}

#[test]
fn the_last_max_versions_are_kept_and_each_reads_back_as_stored() {
    let mut fixture = Fixture::new();
    fixture.machine.keep_versions(3);
    fixture.put(ALICE, "a", 1, false).expect("added");
    for byte in 2..=5 {
        fixture.put(ALICE, "a", byte, true).expect("updated");
    }
    assert_eq!(history(&fixture, ALICE, None, "a"), vec![3, 4, 5]);
    for version in 3..=5 {
        assert_eq!(
            read_version(&fixture, ALICE, None, "a", version),
            Ok(vec![version as u8; 4])
        );
    }
    assert!(matches!(
        read_version(&fixture, ALICE, None, "a", 2),
        Err(VaultError::NotFound(_))
    ));
}

#[test]
fn by_default_ten_versions_are_kept() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    for byte in 2..=12 {
        fixture.put(ALICE, "a", byte, true).expect("updated");
    }
    assert_eq!(
        history(&fixture, ALICE, None, "a"),
        (3..=12).collect::<Vec<_>>()
    );
}

#[test]
fn keeping_one_version_keeps_no_history() {
    let mut fixture = Fixture::new();
    fixture.machine.keep_versions(1);
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    assert_eq!(history(&fixture, ALICE, None, "a"), vec![2]);
}

#[test]
fn old_versions_are_for_the_owner_and_its_grantees_only() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    share(&mut fixture, "a", BOB);
    assert_eq!(history(&fixture, BOB, Some(ALICE), "a"), vec![1, 2]);
    assert_eq!(
        read_version(&fixture, BOB, Some(ALICE), "a", 1),
        Ok(vec![1; 4])
    );
    // A stranger learns nothing, not even whether the secret exists.
    for name in ["a", "missing"] {
        assert!(matches!(
            read_version(&fixture, CAROL, Some(ALICE), name, 1),
            Err(VaultError::PermissionDenied(_))
        ));
        assert!(matches!(
            fixture.ask(VaultQuery::History {
                caller: CAROL.into(),
                owner: Some(ALICE.into()),
                name: name.into(),
            }),
            Err(VaultError::PermissionDenied(_))
        ));
    }
    // Another owner's secret of the same name is not ours.
    assert!(matches!(
        read_version(&fixture, BOB, None, "a", 1),
        Err(VaultError::NotFound(_))
    ));
}

#[test]
fn a_committed_delete_removes_every_version() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    let decide = Operation::Decide {
        tx: "t1".into(),
        name: "a".into(),
        version: 2,
        decision: Decision::Commit,
        participants: Vec::new(),
    };
    fixture.run(ALICE, None, decide).expect("decided");
    fixture.put(ALICE, "a", 9, false).expect("added again");
    assert_eq!(history(&fixture, ALICE, None, "a"), vec![1]);
    assert_eq!(read_version(&fixture, ALICE, None, "a", 1), Ok(vec![9; 4]));
}

#[test]
fn unshare_keeps_the_version_it_replaces() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    share(&mut fixture, "a", BOB);
    let unshare = Operation::Unshare {
        name: "a".into(),
        grantee: BOB.into(),
        sealed: SealedSecret(vec![2; 4]),
        version: 2,
        grants: Vec::new(),
    };
    assert_eq!(fixture.run(ALICE, None, unshare), Ok(Response::Unshared));
    assert_eq!(history(&fixture, ALICE, None, "a"), vec![1, 2]);
}

#[test]
fn snapshots_carry_the_old_versions() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    let snapshot = fixture.machine.snapshot().expect("snapshot");
    let mut other = Fixture::new();
    other.machine.restore(2, &snapshot).expect("restore");
    assert_eq!(history(&other, ALICE, None, "a"), vec![1, 2]);
    assert_eq!(read_version(&other, ALICE, None, "a", 1), Ok(vec![1; 4]));
    assert_eq!(other.machine.snapshot().expect("snapshot"), snapshot);
}

#[test]
fn list_shared_names_what_others_shared_with_the_caller() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "b", 1, false).expect("added");
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    fixture.put(ALICE, "private", 1, false).expect("added");
    share(&mut fixture, "b", BOB);
    share(&mut fixture, "a", BOB);
    let listing = fixture.ask(VaultQuery::Shared { caller: BOB.into() });
    let expected = |name: &str, version| SharedSummary {
        owner: ALICE.into(),
        name: name.into(),
        version,
    };
    assert_eq!(
        listing,
        Ok(Response::SharedSecrets(vec![
            expected("a", 2),
            expected("b", 1)
        ]))
    );
    assert_eq!(
        fixture.ask(VaultQuery::Shared {
            caller: CAROL.into()
        }),
        Ok(Response::SharedSecrets(Vec::new()))
    );
}
