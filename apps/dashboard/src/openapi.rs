//! The hand-written OpenAPI 3.1 description of the API.

use serde_json::{Value, json};

use crate::RANGES;

pub(crate) fn document() -> Value {
    let ranges: Vec<&str> = RANGES.iter().map(|(n, _)| *n).collect();
    let range_param = |default: &str| {
        json!({
            "name": "range", "in": "query", "required": false,
            "description": "Time window; `live` is 5 minutes. Buckets are range / TARGET_DATA_POINTS, aligned to multiples of the bucket (UTC).",
            "schema": {"type": "string", "enum": ranges, "default": default}
        })
    };
    let name_param = json!({
        "name": "name", "in": "path", "required": true,
        "description": "Target name (the `<name>` of `SERVICE_URL_<name>`).",
        "schema": {"type": "string"}
    });
    let error = json!({"$ref": "#/components/schemas/Error"});
    let json_error =
        |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    let svg = json!({"description": "SVG badge", "content": {"image/svg+xml": {"schema": {"type": "string"}}}});
    let stats = json!({"$ref": "#/components/schemas/Stats"});
    let num_series = json!({"type": "array", "items": {"type": ["number", "null"]}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Heartbeat dashboard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only API over the Heartbeat agent's database. Times are UTC milliseconds (`*_ms`) or RFC 3339 strings in the dashboard's TZ. Empty buckets are null. Jitter is max - min (per bucket in series, over the window in stats)."
        },
        "paths": {
            "/health": {"get": {
                "summary": "Freshness of the newest cycle",
                "responses": {
                    "200": {"description": "Newest cycle is fresher than DASHBOARD_STALE_SECONDS", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                    "503": {"description": "`stale`, or `no data yet`", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
                }
            }},
            "/api/live": {"get": {
                "summary": "Overview: latest values, window statistics and bucketed history (the replaced system's shape, plus additions)",
                "parameters": [range_param("1h")],
                "responses": {
                    "200": {"description": "Overview", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Live"}}}},
                    "400": json_error("Unknown range; the body lists `valid_ranges`"),
                    "503": json_error("No data yet")
                }
            }},
            "/api/services/{name}": {"get": {
                "summary": "One target: bucketed series, distribution, stats, incidents and recent distinct errors",
                "parameters": [name_param, range_param("1h")],
                "responses": {
                    "200": {"description": "Target detail", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceDetail"}}}},
                    "400": json_error("Unknown range"),
                    "404": json_error("Unknown target"),
                    "503": json_error("No data yet")
                }
            }},
            "/badge/{name}/status.svg": {"get": {
                "summary": "Latest status badge",
                "parameters": [name_param],
                "responses": {"200": svg, "404": json_error("Unknown target"), "503": json_error("No data yet")}
            }},
            "/badge/{name}/uptime.svg": {"get": {
                "summary": "Uptime badge (healthy checks / all checks)",
                "parameters": [name_param, range_param("24h")],
                "responses": {"200": svg, "400": json_error("Unknown range"), "404": json_error("Unknown target"), "503": json_error("No data yet")}
            }},
            "/badge/{name}/response-time.svg": {"get": {
                "summary": "Average latency badge",
                "parameters": [name_param, range_param("24h")],
                "responses": {"200": svg, "400": json_error("Unknown range"), "404": json_error("Unknown target"), "503": json_error("No data yet")}
            }},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}}
            }}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"},
                "valid_ranges": {"type": "array", "items": {"type": "string"}}
            }},
            "Health": {"type": "object", "required": ["status"], "properties": {
                "status": {"type": "string", "enum": ["ok", "stale", "no data yet"]},
                "last_cycle_ms": {"type": "integer"},
                "age_s": {"type": "number"},
                "stale_after_s": {"type": "number"}
            }},
            "Stats": {"type": "object", "properties": {
                "max": {"type": ["number", "null"]}, "avg": {"type": ["number", "null"]},
                "min": {"type": ["number", "null"]}, "jitter": {"type": ["number", "null"]}
            }},
            "ServiceStats": {"type": "object", "properties": {
                "uptime": {"type": ["number", "null"], "description": "healthy / all checks x 100"},
                "success": {"type": "integer"}, "failure": {"type": "integer"},
                "distribution": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "checks per status: healthy, down, error, timeout, unknown"},
                "max": {"type": ["number", "null"]}, "avg": {"type": ["number", "null"]},
                "min": {"type": ["number", "null"]}, "jitter": {"type": ["number", "null"]}
            }},
            "Service": {"type": "object", "properties": {
                "name": {"type": "string"},
                "service_type": {"type": "string", "enum": ["http", "docker", "push"]},
                "status": {"type": ["string", "null"], "enum": ["healthy", "down", "error", "timeout", "unknown", null]},
                "status_code": {"type": ["integer", "null"]},
                "latency": {"type": ["number", "null"]},
                "error": {"type": ["string", "null"], "description": "the stored error message of the latest check"},
                "last_check_ms": {"type": ["integer", "null"]},
                "stats": {"$ref": "#/components/schemas/ServiceStats"}
            }},
            "Live": {"type": "object", "properties": {
                "last_updated": {"type": ["string", "null"]},
                "last_updated_ms": {"type": ["integer", "null"]},
                "range": {"type": "string"}, "bucket_seconds": {"type": "integer"},
                "source": {"type": "string", "enum": ["raw", "minute", "hour"]},
                "timezone": {"type": "string"},
                "system": {"type": "object", "properties": {
                    "cpu": {"type": ["number", "null"]}, "ram": {"type": ["number", "null"]},
                    "disk": {"type": ["number", "null"]}, "containers": {"type": ["integer", "null"]},
                    "uptime": {"type": ["number", "null"], "description": "host uptime, seconds"}
                }},
                "monitor": {"type": "object", "description": "outbound heartbeat (worker) and cycle duration", "properties": {
                    "worker_status": {"type": ["integer", "null"]},
                    "uptime": {"type": "object", "additionalProperties": {"type": ["number", "null"]}, "description": "{<range>: % of cycles whose worker answered 200}"},
                    "distribution": {"type": "array", "items": {"type": "object", "properties": {"value": {"type": "integer"}, "name": {"type": "string"}}}},
                    "stats": stats
                }},
                "network": {"type": "object", "properties": {
                    "internet_status": {"type": ["integer", "null"], "enum": [0, 1, null]},
                    "uptime": {"type": ["number", "null"]},
                    "uptime_counts": {"type": "object", "properties": {"success": {"type": "integer"}, "failure": {"type": "integer"}}},
                    "stats": stats
                }},
                "services": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}},
                "history": {"type": "object", "properties": {
                    "times": {"type": "array", "items": {"type": "string"}},
                    "times_ms": {"type": "array", "items": {"type": "integer"}},
                    "system": {"type": "object", "properties": {"cpu": num_series, "ram": num_series, "disk": num_series}},
                    "cycle_duration": num_series, "ping": num_series,
                    "services": {"type": "object", "additionalProperties": num_series, "description": "average latency per bucket"},
                    "services_detail": {"type": "object", "additionalProperties": {"type": "object", "properties": {"min": num_series, "max": num_series, "jitter": num_series, "uptime": num_series}}}
                }},
                "coverage": {"type": "object", "properties": {
                    "cycles": {"type": "integer"}, "interval_seconds": {"type": ["integer", "null"]},
                    "covered_seconds": {"type": ["integer", "null"]}, "range_seconds": {"type": "integer"},
                    "ratio": {"type": ["number", "null"]}, "method": {"type": "string"}
                }}
            }},
            "ServiceDetail": {"allOf": [{"$ref": "#/components/schemas/Service"}, {"type": "object", "properties": {
                "range": {"type": "string"}, "bucket_seconds": {"type": "integer"},
                "source": {"type": "string"},
                "distribution": {"type": "object", "additionalProperties": {"type": "integer"}},
                "series": {"type": "array", "items": {"type": "object", "properties": {
                    "time": {"type": "string"}, "time_ms": {"type": "integer"}, "n": {"type": ["integer", "null"]},
                    "uptime": {"type": ["number", "null"]}, "avg": {"type": ["number", "null"]},
                    "min": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]}, "jitter": {"type": ["number", "null"]}
                }}},
                "incidents": {"type": "array", "items": {"type": "object"}},
                "errors": {"type": "array", "items": {"type": "object", "properties": {
                    "message": {"type": "string"}, "count": {"type": "integer"},
                    "last_seen_ms": {"type": "integer"}, "last_seen": {"type": "string"}
                }}},
                "progress": {"type": ["object", "null"], "description": "push targets: the newest progress task", "properties": {
                    "task_name": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "running", "completed", "failed"]},
                    "current_step": {"type": "integer"}, "total_steps": {"type": "integer"},
                    "percentage": {"type": "number"}, "message": {"type": ["string", "null"]},
                    "updated_at_ms": {"type": "integer"}, "updated_at": {"type": ["string", "null"]}
                }}
            }}]}
        }}
    })
}
