//! Forward compatibility of what a v1 device decodes (docs/protocol.md §2, spec gap 2): a key
//! it does not know is ignored everywhere, a process included, and a process it cannot read is
//! left out of the catalog instead of making the whole answer undecodable (which the device
//! would retry for ever).

use apoyo_sync::Scope;
use apoyo_sync::wire::{self as protocol, ActivateResponse, ProcessList, limits};
use ciborium::{Value, cbor};

fn process(id: &str) -> Value {
    cbor!({
        "id" => id,
        "name" => "Proceso",
        "accepted_models" => ["G", "H"],
        "vigencia_cutoff" => "2024-01-01",
        "scope" => "national",
    })
    .expect("value")
}

/// `p` with one more key.
fn with(mut p: Value, key: &str, value: Value) -> Value {
    if let Value::Map(m) = &mut p {
        m.push((Value::Text(key.into()), value));
    }
    p
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("encode");
    out
}

/// A catalog as a later endpoint may send it: a process with a key of a later version, one with
/// a scope form this version does not know, one missing a required key, one that breaks the
/// §6.3 rules (a sección above 9999), and an unknown key at the top.
fn later_catalog() -> Vec<Value> {
    vec![
        with(
            process("con-clave-nueva"),
            "min_age",
            Value::Integer(18.into()),
        ),
        with(
            process("alcance-nuevo"),
            "scope",
            cbor!({"distritos" => [5]}).expect("value"),
        ),
        {
            let mut p = process("sin-nombre");
            if let Value::Map(m) = &mut p {
                m.retain(|(k, _)| k.as_text() != Some("name"));
            }
            p
        },
        with(
            process("seccion-enorme"),
            "scope",
            cbor!({"secciones" => [{"entidad" => 9, "seccion" => 10_000}]}).expect("value"),
        ),
        process("de-siempre"),
    ]
}

fn ids(processes: &[apoyo_sync::Process]) -> Vec<&str> {
    processes.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn a_process_list_with_unknown_keys_decodes_and_keeps_what_it_can_read() {
    let list = Value::Map(vec![
        (Value::Text("v".into()), Value::Integer(1.into())),
        (
            Value::Text("processes".into()),
            Value::Array(later_catalog()),
        ),
        (Value::Text("next_page".into()), Value::Text("x".into())),
    ]);
    let decoded: ProcessList =
        protocol::decode(&encode(&list), limits::MAX_CATALOG_BYTES, "process list")
            .expect("a later catalog decodes");
    assert_eq!(ids(&decoded.processes), ["con-clave-nueva", "de-siempre"]);
    assert_eq!(decoded.processes[0].scope, Scope::national());
}

#[test]
fn an_activation_answer_with_a_later_process_still_activates() {
    let answer = cbor!({
        "v" => 1,
        "token" => "t0k",
        "expires_at" => "2021-11-21T15:04:11Z",
        "receipt_key" => Value::Bytes(vec![7; 32]),
        "receipt_key_id" => "0011223344556677",
        "processes" => Value::Array(later_catalog()),
        "key_certs" => Value::Array(vec![]),
    })
    .expect("value");
    let decoded: ActivateResponse =
        protocol::decode(&encode(&answer), limits::MAX_CATALOG_BYTES, "activation")
            .expect("a later activation answer decodes");
    assert_eq!(decoded.token, "t0k");
    assert_eq!(ids(&decoded.processes), ["con-clave-nueva", "de-siempre"]);
}

#[test]
fn a_process_list_that_is_not_a_list_is_still_refused() {
    let list = cbor!({"v" => 1, "processes" => "none"}).expect("value");
    let r: apoyo_sync::Result<ProcessList> =
        protocol::decode(&encode(&list), limits::MAX_CATALOG_BYTES, "process list");
    assert!(r.is_err());
}
