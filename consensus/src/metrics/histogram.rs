//! [`LatencyHistogram`]: a Prometheus histogram of durations whose
//! `observe` is a handful of relaxed atomic additions.
//!
//! prometheus-client's own `Histogram` takes a write lock on every
//! observation; the log writer, the apply worker and the driver observe on
//! their hot paths, so this one keeps one atomic per bucket instead and
//! only the scrape assembles a consistent-enough view (a scrape that races
//! an observation may see the count one ahead of a bucket, which
//! Prometheus tolerates).

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 50 µs to about 13 s, doubling
/// (fsyncs take tens of microseconds on an SSD, a commit over a slow
/// network hundreds of milliseconds). Beyond the last one is `+Inf`.
const BUCKET_BOUNDS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6,
    0.051_2, 0.102_4, 0.204_8, 0.409_6, 0.819_2, 1.638_4, 3.276_8, 6.553_6, 13.107_2,
];

/// A histogram of durations in seconds. Cheap to clone: every clone
/// records into the same buckets.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    inner: Arc<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BUCKET_BOUNDS.len() + 1],
    /// Sum of all observations in nanoseconds (u64 nanoseconds hold 584
    /// years, so it does not overflow in practice).
    sum_nanos: AtomicU64,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKET_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKET_BOUNDS.len());
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The text encoder accumulates the per-bucket counts itself and
        // writes `+Inf` for an upper bound of f64::MAX.
        let buckets: Vec<(f64, u64)> = BUCKET_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(
                self.inner
                    .counts
                    .iter()
                    .map(|count| count.load(Ordering::Relaxed)),
            )
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let counts: Vec<u64> = histogram
            .inner
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 2, "10 µs and 50 µs are both <= 50 µs");
        assert_eq!(counts[6], 1, "3 ms is in the 3.2 ms bucket");
        assert_eq!(counts[BUCKET_BOUNDS.len()], 1, "60 s is only in +Inf");
        assert_eq!(histogram.count(), 4);
        let sum = histogram.inner.sum_nanos.load(Ordering::Relaxed);
        assert_eq!(sum, 10_000 + 50_000 + 3_000_000 + 60_000_000_000);
    }
}
