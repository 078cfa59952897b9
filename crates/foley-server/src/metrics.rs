//! Prometheus metrics (the `metrics` facade; one recorder per process). Names: `foley_tasks_submitted_total`,
//! `foley_tasks_refused_total`, `foley_tasks_total{status}`, `foley_task_seconds{status}`,
//! `foley_stage_seconds{stage}`, `foley_queue_depth`, `foley_running_tasks`, `foley_webhooks_total{result}`,
//! `foley_auth_failures_total`. GPU memory is not reported: the Engine trait does not expose it (yet).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's recorder handle (installed on first use; later servers in the same process share it).
pub fn handle() -> PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (embedding applications); ours then stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
    .clone()
}
