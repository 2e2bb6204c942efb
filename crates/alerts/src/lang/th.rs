//! Thai alert texts.

use heartbeat_core::Status;

use super::{Strings, Unit};

pub const STRINGS: Strings = Strings {
    code: "th",
    aliases: &["tha", "thai", "ไทย", "ภาษาไทย"],
    name: "ไทย",
    decimal_separator: '.',
    unit,
    status,

    state_down: "ล่ม",
    state_up: "ใช้งานได้",
    state_ok: "ปกติ",
    state_warning: "คำเตือน",
    state_critical: "วิกฤต",

    down_title: "{target} ล่ม",
    down_headline: "{target} **ล่ม** ใช้งานไม่ได้",
    recovered_title: "{target} กลับมาใช้งานได้แล้ว (ล่มไป {duration})",
    recovered_headline: "{target} กลับมา **ใช้งานได้** แล้ว หลังจากล่มไป {duration}",
    reminder_title: "{target} ยังล่มอยู่ ({duration})",
    reminder_headline: "{target} ยัง **ล่ม** อยู่ เป็นเวลา {duration} แล้ว",

    connectivity_lost_title: "เอเจนต์ขาดการเชื่อมต่อ",
    connectivity_lost_headline: "การตรวจสอบการเชื่อมต่อของเอเจนต์เอง ({target}) **ล้มเหลว** \
        การแจ้งเตือนที่เกิดขึ้นในระหว่างนี้อาจมีสาเหตุมาจากเครือข่ายของเอเจนต์",
    connectivity_restored_title: "เอเจนต์กลับมาเชื่อมต่อได้แล้ว (ขาดไป {duration})",
    connectivity_restored_headline: "การตรวจสอบการเชื่อมต่อของเอเจนต์เอง ({target}) กลับมา \
        **ทำงานได้** แล้ว หลังจากขาดการเชื่อมต่อไป {duration}",

    worker_title: "ฮาร์ตบีตขาออก {target}: {state}",
    worker_state_ok: "ปกติ",
    worker_state_blind: "ไม่ทราบสถานะก่อนหน้า",
    worker_state_recovery_failed: "อัปเดตการกู้คืนไม่สำเร็จ",
    worker_state_critical: "ข้อผิดพลาดร้ายแรง",
    worker_state_unreachable: "ติดต่อไม่ได้",
    worker_state_unexpected: "ได้รับคำตอบที่ไม่คาดคิด",
    worker_ok: "เวิร์กเกอร์ฮาร์ตบีต ({target}) รับรายงานเรียบร้อยแล้ว",
    worker_blind: "เวิร์กเกอร์ฮาร์ตบีต ({target}) รับรายงานแล้ว แต่ไม่มีสถานะก่อนหน้าให้เปรียบเทียบ (blind)",
    worker_recovery_failed: "เวิร์กเกอร์ฮาร์ตบีต ({target}) บันทึกการอัปเดตการกู้คืนไม่สำเร็จ",
    worker_critical: "เวิร์กเกอร์ฮาร์ตบีต ({target}) แจ้งข้อผิดพลาดร้ายแรง",
    worker_unreachable: "ไม่สามารถติดต่อเวิร์กเกอร์ฮาร์ตบีต ({target}) ได้",
    worker_unexpected: "เวิร์กเกอร์ฮาร์ตบีต ({target}) ตอบกลับมาในรูปแบบที่ไม่คาดคิด",

    label_state: "สถานะ",
    label_reason: "สาเหตุ",
    label_first_error: "ข้อผิดพลาดแรก",
    label_since: "เริ่มล้มเหลวเมื่อ",
    label_outage_started: "เริ่มล่มเมื่อ",
    label_confirmed_at: "ยืนยันเมื่อ",
    label_recovered_at: "กลับมาใช้งานได้เมื่อ",
    label_time: "เวลา",
    label_duration: "ระยะเวลาที่ล่ม",
    label_down_for: "ล่มมาแล้ว",
    label_latency: "เวลาตอบสนอง",
    label_failed_checks: "ตรวจสอบล้มเหลว",
    checks_in_a_row: "{count} ครั้งติดต่อกัน",
    not_available: "ไม่มีข้อมูล",

    held_back_tag: "พักไว้",
    held_back_note: "พักการแจ้งเตือนไว้: การตรวจสอบการเชื่อมต่อของเอเจนต์เองกำลังล้มเหลว \
        ปัญหานี้อาจเกิดจากเครือข่ายของเอเจนต์ ไม่ใช่ที่เป้าหมาย",
};

fn unit(unit: Unit, _n: u64) -> &'static str {
    // Thai nouns do not inflect for number.
    match unit {
        Unit::Day => "วัน",
        Unit::Hour => "ชั่วโมง",
        Unit::Minute => "นาที",
        Unit::Second => "วินาที",
    }
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Healthy => "ปกติ",
        Status::Down => "ล่ม",
        Status::Error => "ผิดพลาด",
        Status::Timeout => "หมดเวลา",
        Status::Unknown => "ไม่ทราบสถานะ",
    }
}
