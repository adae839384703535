import CairnMetrics
import CoreMetrics
import Testing

@Suite struct RenderTests {
    /// swift-metrics calls made through the factory (as a bootstrapped backend would) render as Prometheus text.
    @Test func countersAndGaugesRender() {
        let metrics = PrometheusMetrics()
        let counter = Counter(label: "cairn_test_requests_total", dimensions: [("method", "range")], factory: metrics.factory)
        counter.increment(by: 3)
        let gauge = Gauge(label: "cairn_test_leader", factory: metrics.factory)
        gauge.record(1)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("# TYPE cairn_test_requests_total counter"))
        #expect(text.contains("cairn_test_requests_total{method=\"range\"} 3"))
        #expect(text.contains("cairn_test_leader 1"))
        #expect(PrometheusMetrics.contentType == "text/plain; version=0.0.4; charset=utf-8")
    }
}
