//! Spanish alert texts.

use heartbeat_core::Status;

use super::{Strings, Unit};

pub const STRINGS: Strings = Strings {
    code: "es",
    aliases: &["spa", "spanish", "español", "espanol", "castellano"],
    name: "Español",
    // Peru (the replaced system's home) and most of Latin America write a point.
    decimal_separator: '.',
    unit,
    status,

    state_down: "CAÍDO",
    state_up: "OPERATIVO",
    state_ok: "OK",
    state_warning: "ADVERTENCIA",
    state_critical: "CRÍTICO",

    down_title: "{target} está caído",
    down_headline: "{target} está **CAÍDO**.",
    recovered_title: "{target} vuelve a estar operativo tras {duration}",
    recovered_headline: "{target} vuelve a estar **OPERATIVO** tras {duration} de caída.",
    reminder_title: "{target} sigue caído ({duration})",
    reminder_headline: "{target} sigue **CAÍDO** desde hace {duration}.",

    connectivity_lost_title: "El agente perdió la conectividad",
    connectivity_lost_headline: "La comprobación de conectividad del propio agente ({target}) \
        está **fallando**. Las alertas que lleguen mientras tanto pueden deberse a la red del agente.",
    connectivity_restored_title: "El agente recuperó la conectividad tras {duration}",
    connectivity_restored_headline: "La comprobación de conectividad del propio agente ({target}) \
        vuelve a **funcionar** tras {duration}.",

    worker_title: "Latido saliente {target}: {state}",
    worker_state_ok: "OK",
    worker_state_blind: "a ciegas",
    worker_state_recovery_failed: "falló la actualización de recuperación",
    worker_state_critical: "error crítico",
    worker_state_unreachable: "inalcanzable",
    worker_state_unexpected: "respuesta inesperada",
    worker_ok: "El worker de latidos ({target}) aceptó el reporte.",
    worker_blind: "El worker de latidos ({target}) aceptó el reporte, pero no tenía un estado \
        anterior con el que compararlo (a ciegas).",
    worker_recovery_failed: "El worker de latidos ({target}) no pudo registrar la actualización \
        de recuperación.",
    worker_critical: "El worker de latidos ({target}) informó de un error crítico.",
    worker_unreachable: "No se pudo contactar con el worker de latidos ({target}).",
    worker_unexpected: "El worker de latidos ({target}) dio una respuesta inesperada.",

    label_state: "Estado",
    label_reason: "Motivo",
    label_first_error: "Primer error",
    label_since: "Fallando desde",
    label_outage_started: "Inicio de la caída",
    label_confirmed_at: "Confirmado el",
    label_recovered_at: "Recuperado el",
    label_time: "Hora",
    label_duration: "Duración de la caída",
    label_down_for: "Caído desde hace",
    label_latency: "Latencia",
    label_failed_checks: "Comprobaciones fallidas",
    checks_in_a_row: "{count} seguidas",
    not_available: "sin datos",

    held_back_tag: "retenida",
    held_back_note: "Retenida: la comprobación de conectividad del propio agente está fallando; \
        puede que el problema sea la red del agente y no el objetivo.",
};

fn unit(unit: Unit, n: u64) -> &'static str {
    match unit {
        Unit::Day if n == 1 => "día",
        Unit::Day => "días",
        Unit::Hour => "h",
        Unit::Minute => "min",
        Unit::Second => "s",
    }
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Healthy => "correcto",
        Status::Down => "caído",
        Status::Error => "error",
        Status::Timeout => "tiempo agotado",
        Status::Unknown => "desconocido",
    }
}
