//! `/metrics`: Prometheus text, through the `metrics` facade and its Prometheus exporter. The
//! counts live in the server (per route, per peer, in the broker and the sync hub); each scrape
//! copies them into the recorder and renders it.

use metrics::{counter, describe_counter, describe_gauge, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use super::Web;

/// The recorder `/metrics` renders.
pub fn recorder() -> PrometheusRecorder {
    let recorder = PrometheusBuilder::new().build_recorder();
    with_local_recorder(&recorder, describe);
    recorder
}

fn describe() {
    describe_gauge!("switchboard_connections", "Open WebSocket connections, by endpoint");
    describe_counter!("switchboard_connections_total", "WebSocket connections accepted, by endpoint");
    describe_counter!("switchboard_messages_received_total", "Messages received from peers, by endpoint");
    describe_counter!("switchboard_messages_sent_total", "Messages sent to peers (publications included), by endpoint");
    describe_counter!("switchboard_received_bytes_total", "Payload bytes received from peers, by endpoint");
    describe_counter!("switchboard_sent_bytes_total", "Payload bytes sent to peers, by endpoint");
    describe_counter!("switchboard_closes_total", "Closed connections, by endpoint and close code (1006: lost)");
    describe_counter!(
        "switchboard_rate_limited_total",
        "Peers past a message, byte or ping rate (closed 1008, or a message dropped), by endpoint"
    );
    describe_gauge!("switchboard_open_connections", "TCP connections held (WebSocket and HTTP)");
    describe_counter!(
        "switchboard_refused_connections_total",
        "Connections refused at the door, by reason (full: 503; per_ip, rate: 429)"
    );
    describe_counter!("switchboard_publications_total", "Publications handled (local and from other nodes)");
    describe_counter!("switchboard_deliveries_total", "Publications queued to subscribers");
    describe_counter!("switchboard_deliveries_dropped_total", "Deliveries skipped for slow subscribers (policy Drop)");
    describe_counter!("switchboard_slow_consumer_closes_total", "Slow subscribers closed with 1013");
    describe_gauge!("switchboard_topics", "Topics with local subscribers or history");
    describe_gauge!("switchboard_history_bytes", "Bytes held by the in-memory history");
    describe_counter!(
        "switchboard_history_evicted_total",
        "Kept publications evicted to stay within the history budget"
    );
    describe_gauge!(
        "switchboard_sync_version",
        "Last version delivered to a synced collection's subscribers on this node"
    );
    describe_gauge!("switchboard_sync_stores", "Connected stores of a synced collection, by format");
    describe_gauge!("switchboard_script_endpoints", "Script endpoints by status");
    describe_counter!("switchboard_script_errors_total", "Script handler failures, by endpoint");
    describe_gauge!("switchboard_script_clients", "Outbound script clients, by state");
}

/// The metrics now, as Prometheus text.
pub fn render(web: &Web) -> String {
    with_local_recorder(&web.metrics, || record(web));
    web.metrics.handle().render()
}

fn record(web: &Web) {
    for endpoint in web.hub.endpoints() {
        let path = endpoint.path.clone();
        gauge!("switchboard_connections", "endpoint" => path.clone()).set(endpoint.open as f64);
        counter!("switchboard_connections_total", "endpoint" => path.clone()).absolute(endpoint.connections);
        let traffic = endpoint.traffic;
        counter!("switchboard_messages_received_total", "endpoint" => path.clone()).absolute(traffic.messages_in);
        counter!("switchboard_messages_sent_total", "endpoint" => path.clone()).absolute(traffic.messages_out);
        counter!("switchboard_received_bytes_total", "endpoint" => path.clone()).absolute(traffic.bytes_in);
        counter!("switchboard_sent_bytes_total", "endpoint" => path.clone()).absolute(traffic.bytes_out);
        counter!("switchboard_rate_limited_total", "endpoint" => path.clone()).absolute(endpoint.rate_limited);
        for (code, count) in endpoint.close_codes {
            counter!("switchboard_closes_total", "endpoint" => path.clone(), "code" => code.to_string())
                .absolute(count);
        }
    }
    if let Some(door) = web.hub.door() {
        gauge!("switchboard_open_connections").set(door.open as f64);
        counter!("switchboard_refused_connections_total", "reason" => "full").absolute(door.refused_full);
        counter!("switchboard_refused_connections_total", "reason" => "per_ip").absolute(door.refused_per_ip);
        counter!("switchboard_refused_connections_total", "reason" => "rate").absolute(door.refused_rate);
    }
    let pubsub = web.hub.stats();
    counter!("switchboard_publications_total").absolute(pubsub.published);
    counter!("switchboard_deliveries_total").absolute(pubsub.delivered);
    counter!("switchboard_deliveries_dropped_total").absolute(pubsub.dropped);
    counter!("switchboard_slow_consumer_closes_total").absolute(pubsub.slow_closed);
    gauge!("switchboard_topics").set(pubsub.topics as f64);
    gauge!("switchboard_history_bytes").set(pubsub.history_bytes as f64);
    counter!("switchboard_history_evicted_total").absolute(pubsub.history_evicted);
    for collection in web.sync.collections() {
        let name = collection.name.clone();
        gauge!("switchboard_sync_version", "collection" => name.clone()).set(collection.version as f64);
        gauge!("switchboard_sync_stores", "collection" => name.clone(), "format" => "v1").set(collection.stores as f64);
        gauge!("switchboard_sync_stores", "collection" => name, "format" => "raw").set(collection.raw_stores as f64);
    }
    let scripts = web.project.status();
    for status in ["ok", "error"] {
        let count = scripts.iter().filter(|s| s.status == status).count();
        gauge!("switchboard_script_endpoints", "status" => status).set(count as f64);
    }
    for script in &scripts {
        if let Some(endpoint) = &script.endpoint {
            counter!("switchboard_script_errors_total", "endpoint" => endpoint.clone()).absolute(script.errors);
        }
    }
    let clients = web.project.clients().list();
    for state in ["connecting", "open", "closing", "closed"] {
        let count = clients.iter().filter(|c| c.state == state).count();
        gauge!("switchboard_script_clients", "state" => state).set(count as f64);
    }
}
