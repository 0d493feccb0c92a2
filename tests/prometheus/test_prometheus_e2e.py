"""End to end: a real target goes down and its alert reaches a webhook through real
Prometheus and Alertmanager; it comes back and the resolution arrives too."""

from __future__ import annotations

from dlcourse_testing.alerting import Process, free_port, wait_until


def start_node_exporter(binary: str, port: int, log_dir) -> Process:
    # Only the collectors the host alerts use: keeps the scrape light on a shared machine.
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults"]
    argv += ["--collector.meminfo", "--collector.filesystem"]
    return Process(f"node-exporter-{port}", argv, log_dir)


def test_target_down_alert_reaches_webhook_and_resolves(
    alerting_stack, node_exporter_bin, tmp_path
):
    port = free_port()
    node = start_node_exporter(node_exporter_bin, port, tmp_path)
    try:
        stack = alerting_stack(targets={"node": [f"127.0.0.1:{port}"]})
        up = 'up{job="node"} == 1'
        wait_until(lambda: stack.query(up), 60, lambda: f"{up}\n{stack.logs()}")

        # The Watchdog goes to its own receiver, never to the people.
        stack.webhook.wait_for("DLCourseWatchdog", path="/watchdog", timeout=120)

        node.stop()
        [alert] = stack.webhook.wait_for("DLCourseNodeExporterDown", timeout=120)[:1]
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["instance"] == f"127.0.0.1:{port}"
        assert alert["labels"]["job"] == "node"
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert f"127.0.0.1:{port}" in alert["annotations"]["description"]

        node = start_node_exporter(node_exporter_bin, port, tmp_path)
        stack.webhook.wait_for("DLCourseNodeExporterDown", status="resolved", timeout=120)

        # Info alerts and the Watchdog never reach the notify receiver.
        notified = stack.webhook.alerts(path="/")
        assert not [a for a in notified if a["labels"].get("severity") == "info"]
    finally:
        node.stop()
