//! FHIR R4 `AuditEvent` resources for export to a SIEM or an auditor's tools.
//!
//! Mapping: `type` is the FHIR audit-event-type `rest` code for network actions and DICOM
//! "Application Activity" otherwise; `subtype` carries medai's action name; `action` is C, R, U,
//! D or E from the action's verb; `outcome` 0 (success) or 4 (failure or denial) with the reason
//! in `outcomeDesc`; the agent is the acting user (opaque id, role as text) with its network
//! address; the patient is an entity `Patient/<id>`. The event's sequence number is the
//! resource `id`, so a record can be matched to its inclusion proof (`medai audit prove SEQ`).

use medai_core::audit::{AuditEvent, Outcome};
use serde_json::{json, Value};

fn verb(action: &str) -> &'static str {
    let last = action.rsplit('.').next().unwrap_or(action);
    match last {
        "read" | "list" | "review" | "search" | "export" => "R",
        "create" | "add" | "start" => "C",
        "update" | "assign" | "finish" | "reset_mfa" => "U",
        "delete" | "disable" | "revoke" => "D",
        _ => "E",
    }
}

fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One event as a FHIR R4 `AuditEvent` resource; `seq` becomes its id.
pub fn audit_event(seq: i64, e: &AuditEvent) -> Value {
    let network = e.client_addr.is_some();
    let mut agent = json!({
        "requestor": true,
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": "humanuser", "display": "human user" }] },
    });
    match &e.actor_id {
        Some(id) => {
            agent["who"] = json!({ "identifier": { "system": "urn:medai:user", "value": id } })
        }
        None => agent["who"] = json!({ "display": "unauthenticated" }),
    }
    if let Some(role) = &e.actor_role {
        agent["role"] = json!([{ "text": role }]);
    }
    if let Some(addr) = &e.client_addr {
        agent["network"] = json!({ "address": addr, "type": "2" });
    }
    let mut entity = Vec::new();
    if let Some(p) = &e.patient_id {
        entity.push(json!({ "what": { "reference": format!("Patient/{p}") },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" } }));
    }
    if let Some(u) = &e.target_user_id {
        entity.push(json!({ "what": { "identifier": { "system": "urn:medai:user", "value": u } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" } }));
    }
    if let Some(d) = &e.detail {
        entity.push(json!({ "detail": [{ "type": "medai-detail", "valueString": d }] }));
    }
    // R4 AuditEvent.type: the FHIR audit-event-type code for REST calls, DICOM DCM otherwise.
    let (system, code, display) = if network {
        (
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
            "Restful Operation",
        )
    } else {
        (
            "http://dicom.nema.org/resources/ontology/DCM",
            "110100",
            "Application Activity",
        )
    };
    let mut r = json!({
        "resourceType": "AuditEvent",
        "id": seq.to_string(),
        "type": { "system": system, "code": code, "display": display },
        "subtype": [{ "system": "urn:medai:audit-action", "code": e.action }],
        "action": verb(&e.action),
        "recorded": rfc3339(e.at),
        "outcome": if e.outcome == Outcome::Success { "0" } else { "4" },
        "agent": [agent],
        "source": { "observer": { "display": "medai" },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }] },
    });
    if e.outcome != Outcome::Success {
        r["outcomeDesc"] = json!(e.outcome.as_str());
    }
    if let Some(req) = &e.request_id {
        r["agent"][0]["altId"] = json!(req);
    }
    if !entity.is_empty() {
        r["entity"] = Value::Array(entity);
    }
    r
}

/// A FHIR `Bundle` of type `collection` holding `resources`.
pub fn bundle(resources: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "total": resources.len(),
        "entry": resources.into_iter().map(|r| json!({ "resource": r })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_required_r4_elements() {
        let e = AuditEvent::new(1_700_000_000, "patient.read", Outcome::Denied)
            .actor("u1", "nurse")
            .patient("p9")
            .origin(Some("10.0.0.1".into()), Some("req-1".into()));
        let r = audit_event(42, &e);
        assert_eq!(r["resourceType"], "AuditEvent");
        assert_eq!(r["id"], "42");
        assert_eq!(r["action"], "R");
        assert_eq!(r["outcome"], "4");
        assert_eq!(r["outcomeDesc"], "denied");
        assert_eq!(r["recorded"], "2023-11-14T22:13:20Z");
        assert_eq!(r["type"]["code"], "rest");
        assert_eq!(
            r["type"]["system"],
            "http://terminology.hl7.org/CodeSystem/audit-event-type"
        );
        assert_eq!(r["subtype"][0]["code"], "patient.read");
        assert_eq!(r["agent"][0]["requestor"], true);
        assert_eq!(r["agent"][0]["who"]["identifier"]["value"], "u1");
        assert_eq!(r["agent"][0]["network"]["address"], "10.0.0.1");
        assert_eq!(r["entity"][0]["what"]["reference"], "Patient/p9");
        assert_eq!(r["source"]["observer"]["display"], "medai");
        let cli = audit_event(1, &AuditEvent::new(0, "user.disable", Outcome::Success));
        assert_eq!(cli["action"], "D");
        assert_eq!(cli["type"]["code"], "110100");
        assert_eq!(cli["agent"][0]["who"]["display"], "unauthenticated");
        assert!(cli.get("entity").is_none());
        let b = bundle(vec![r, cli]);
        assert_eq!(b["total"], 2);
        assert_eq!(b["entry"][1]["resource"]["id"], "1");
    }
}
