//! The prometheus-client collector: reads the live counters on every scrape.

use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::class::Backend;
use crate::set::{PoolSet, SetInner};
use crate::stats::StatsSnapshot;

/// One class as a scrape sees it.
pub(crate) struct Scraped {
    pub(crate) class: String,
    pub(crate) backend: Backend,
    pub(crate) in_use: u32,
    pub(crate) idle: u32,
    pub(crate) limit: u32,
    pub(crate) max: u32,
    pub(crate) recommended: Option<u32>,
    pub(crate) stats: StatsSnapshot,
}

impl Scraped {
    fn labels(&self) -> [(&'static str, &str); 2] {
        [("class", &self.class), ("backend", self.backend.as_str())]
    }
}

/// Encodes a set's classes; holds the set weakly so a registry does not keep it alive.
#[derive(Debug)]
pub(crate) struct PoolCollector {
    set: Weak<SetInner>,
}

impl PoolCollector {
    pub(crate) fn new(set: Weak<SetInner>) -> Self {
        Self { set }
    }
}

type Family = (&'static str, &'static str, fn(&Scraped) -> Option<u64>);

/// Gauges: name, help, value.
const GAUGES: [Family; 3] = [
    (
        "mcp_pool_class_limit",
        "Current limit on connections handed out at once, per pool class",
        |s| Some(u64::from(s.limit)),
    ),
    (
        "mcp_pool_class_max_connections",
        "Highest limit the sizing advice may set, per pool class",
        |s| Some(u64::from(s.max)),
    ),
    (
        "mcp_pool_class_recommended_limit",
        "Limit recommended by the last sizing advice, per pool class",
        |s| s.recommended.map(u64::from),
    ),
];

/// Counters (exposed with `_total`): name, help, value.
const COUNTERS: [Family; 6] = [
    (
        "mcp_pool_class_acquires",
        "Successful connection acquires, per pool class",
        |s| Some(s.stats.acquires),
    ),
    (
        "mcp_pool_class_acquire_waits",
        "Acquires that found no free connection and waited, per pool class",
        |s| Some(s.stats.waits),
    ),
    (
        "mcp_pool_class_acquire_timeouts",
        "Acquires that timed out, per pool class",
        |s| Some(s.stats.timeouts),
    ),
    (
        "mcp_pool_class_errors",
        "Acquires or commands that failed other than by timeout, per pool class",
        |s| Some(s.stats.errors),
    ),
    (
        "mcp_pool_class_connections_opened",
        "Connections opened, per pool class",
        |s| Some(s.stats.opened),
    ),
    (
        "mcp_pool_class_connections_closed",
        "Connections closed, per pool class",
        |s| Some(s.stats.closed),
    ),
];

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(set) = self.set.upgrade() else {
            return Ok(());
        };
        let classes = PoolSet::scrape(&set);
        drop(set);
        if classes.is_empty() {
            return Ok(());
        }

        let mut family = encoder.encode_descriptor(
            "mcp_pool_class_connections",
            "Connections per pool class and state",
            None,
            MetricType::Gauge,
        )?;
        for class in &classes {
            for (state, value) in [("in_use", class.in_use), ("idle", class.idle)] {
                let [c, b] = class.labels();
                let labels = [c, b, ("state", state)];
                ConstGauge::new(i64::from(value)).encode(family.encode_family(&labels)?)?;
            }
        }

        for (name, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for class in &classes {
                if let Some(v) = value(class) {
                    let labels = class.labels();
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }

        for (name, help, value) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for class in &classes {
                if let Some(v) = value(class) {
                    let labels = class.labels();
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "mcp_pool_class_acquire_wait_seconds",
            "Time from the acquire call to the connection or the timeout, per pool class",
            None,
            MetricType::Histogram,
        )?;
        for class in &classes {
            let hist = &class.stats.acquire_wait;
            let mut buckets = Vec::with_capacity(hist.buckets.len() + 1);
            let mut below = 0_u64;
            for bucket in &hist.buckets {
                buckets.push((bucket.le_seconds, bucket.count.saturating_sub(below)));
                below = bucket.count;
            }
            buckets.push((f64::INFINITY, hist.count.saturating_sub(below)));
            let labels = class.labels();
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(hist.sum_seconds, hist.count, &buckets, None)?;
        }
        Ok(())
    }
}
