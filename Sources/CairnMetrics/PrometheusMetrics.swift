import CoreMetrics
import Prometheus

/// swift-metrics recorded into a Prometheus registry, rendered in the text format `/metrics` serves.
///
/// Libraries only use swift-metrics (`Counter`, `Gauge`, `Timer`, ...); the executable makes one
/// `PrometheusMetrics`, bootstraps it once, and serves ``render()``:
///
/// ```swift
/// let metrics = PrometheusMetrics()
/// metrics.bootstrapMetricsSystem()          // executable only, once
/// ... metricsBody: { metrics.render() }
/// ```
public struct PrometheusMetrics: Sendable {
    /// The registry every metric lands in.
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics backend writing into `registry`.
    public let factory: PrometheusMetricsFactory

    /// `Content-Type` of the Prometheus text exposition format (what etcd sends).
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        // Durations here run from microseconds (a commit stage) to seconds (a slow fsync): the
        // library's defaults start at 5 ms. 50 µs doubling up to ~6.5 s, as etcd's disk histograms
        // double from 1 ms.
        factory.defaultDurationHistogramBuckets = (0..<18).map { .nanoseconds(50_000 << $0) }
        self.factory = factory
    }

    /// Makes this the process-wide swift-metrics backend. Call once, from the executable only
    /// (swift-metrics traps on a second bootstrap).
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(self.factory)
    }

    /// The current values in Prometheus's text format.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4096)
        self.registry.emit(into: &buffer)
        return buffer
    }
}
