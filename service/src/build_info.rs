//! `<prefix>_build_info{version="…", git_revision="…"} 1`: the Prometheus convention for telling
//! which build is running (joined onto other series in queries, and shown per VM in a rollout).

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Registers the gauge in `registry`; with `Registry::with_prefix("producer")` it is exported as
/// `producer_build_info`.
pub fn register(registry: &mut Registry) {
    let family = Family::<Vec<(String, String)>, Gauge>::default();
    family
        .get_or_create(
            &build_info::fields()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        )
        .set(1);
    registry.register(
        "build_info",
        "The running build: version and git revision, always 1",
        family,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_with_version_and_revision() {
        let mut registry = prometheus_client::registry::Registry::with_prefix("producer");
        super::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let want = format!(
            "producer_build_info{{version=\"{}\",git_revision=\"{}\"}} 1",
            build_info::PKG_VERSION,
            build_info::GIT_REVISION
        );
        assert!(text.contains(&want), "{text}");
    }
}
