//! Every validation rule, through `Store::capture` on a real store: the error names the field
//! (never the value), and a refused capture leaves nothing behind.

mod common;

use std::sync::Arc;

use apoyo_sync::testkit::ManualClock;
use apoyo_sync::testkit::Store;
use apoyo_sync::testkit::StoreOptions;
use apoyo_sync::wire::limits::{MAX_CARD_IMAGE_BYTES, MAX_SELFIE_BYTES, MAX_SIGNATURE_BYTES};
use apoyo_sync::{
    CaptureId, CredentialModel, Error, ErrorClass, Field, Location, NewCapture, PartKind,
};
use time::OffsetDateTime;
use time::macros::datetime;

use common::*;

const PROCESSES: &str = r#"[
  {"id": "nacional", "name": "Nacional", "accepted_models": ["E", "F", "G", "H"],
   "vigencia_cutoff": "2022-01-01", "scope": "national"},
  {"id": "solo-gh", "name": "Solo G y H", "accepted_models": ["G", "H"],
   "vigencia_cutoff": "2022-01-01", "scope": "national"},
  {"id": "corte-31-dic", "name": "Corte al 31 de diciembre", "accepted_models": ["G"],
   "vigencia_cutoff": "2022-12-31", "scope": "national"},
  {"id": "corte-2023", "name": "Corte 2023", "accepted_models": ["G"],
   "vigencia_cutoff": "2023-01-01", "scope": "national"},
  {"id": "entidades", "name": "CDMX y Edomex", "accepted_models": ["G"],
   "vigencia_cutoff": "2022-01-01", "scope": {"entidades": [9, 15]}},
  {"id": "secciones", "name": "Dos secciones", "accepted_models": ["G"],
   "vigencia_cutoff": "2022-01-01",
   "scope": {"secciones": [{"entidad": 9, "seccion": 1234}, {"entidad": 15, "seccion": 77}]}},
  {"id": "ventana", "name": "Con ventana", "accepted_models": ["G"],
   "vigencia_cutoff": "2022-01-01", "scope": "national",
   "opens": "2022-01-10T00:00:00Z", "closes": "2022-03-01T00:00:00Z"}
]"#;

const NOW: OffsetDateTime = datetime!(2022-02-01 12:00:00 UTC);

/// A store on a manual clock, with helpers that capture and check what was stored.
struct V {
    fx: Fixture,
    store: Store,
    clock: ManualClock,
    next: u32,
}

impl V {
    fn new() -> Self {
        let fx = Fixture::new();
        let clock = ManualClock::new(NOW);
        let opts = StoreOptions {
            clock: Arc::new(clock.clone()),
            ..Default::default()
        };
        let store = fx.init_with_processes(opts, PROCESSES);
        V {
            fx,
            store,
            clock,
            next: 0,
        }
    }

    /// A fresh, valid capture for `process` (a clave not used before in this store).
    fn base(&mut self, process: &str) -> NewCapture {
        self.next += 1;
        capture_of(process, &clave(self.next))
    }

    fn with_clave(&mut self, clave: &str) -> NewCapture {
        let mut c = self.base("nacional");
        c.fields.clave_elector = clave.to_string();
        c
    }

    /// The capture is accepted and its manifest holds what was given.
    fn accept(&mut self, c: NewCapture) -> CaptureId {
        let what = format!("{:?} {:?}", c.fields, c.location);
        let before = self.store.status().expect("status").captured;
        let fields = c.fields.clone();
        let id = self
            .store
            .capture(c)
            .unwrap_or_else(|e| panic!("refused {what}: {e:?}"));
        assert_eq!(self.store.status().expect("status").captured, before + 1);
        let m = self.store.manifest(&id).expect("manifest");
        assert_eq!(m.fields, fields);
        assert_eq!(m.captured_at, self.clock_now());
        id
    }

    /// The capture is refused; nothing was stored and the message holds no personal value.
    fn refuse(&mut self, c: NewCapture) -> Error {
        let what = format!("{:?} {:?}", c.fields, c.location);
        let status = self.store.status().expect("status");
        let files = part_file_names(&self.fx.store_dir());
        let f = &c.fields;
        let mut personal: Vec<String> = vec![f.clave_elector.clone()];
        personal.extend(f.curp.clone());
        personal.extend(f.ocr.clone());
        personal.extend(f.cic.clone());
        if let Some(l) = c.location {
            personal.push(format!("{}", l.lat));
            personal.push(format!("{}", l.lon));
        }
        let err = self
            .store
            .capture(c)
            .err()
            .unwrap_or_else(|| panic!("accepted {what}"));
        let shown = [err.to_string(), format!("{err:?}")];
        for value in personal.iter().filter(|v| v.trim().len() >= 4) {
            for s in &shown {
                assert!(
                    !s.contains(value.as_str()),
                    "the error {s:?} shows the value {value:?}"
                );
            }
        }
        assert_eq!(self.store.status().expect("status"), status, "{what}");
        assert_eq!(part_file_names(&self.fx.store_dir()), files, "{what}");
        err
    }

    fn refuse_invalid(&mut self, c: NewCapture, field: Field) {
        let what = format!("{:?}", c.fields);
        match self.refuse(c) {
            Error::Invalid { field: f, .. } if f == field => {}
            other => panic!("{what}: expected Invalid {{ {field:?} }}, got {other:?}"),
        }
    }

    fn clock_now(&self) -> OffsetDateTime {
        apoyo_sync::Clock::now(&self.clock)
    }
}

fn assert_invalid_class(e: &Error) {
    assert_eq!(e.class(), ErrorClass::InvalidInput, "{e:?}");
}

// ---- clave de elector -----------------------------------------------------------------------

/// A valid clave with `date` (YYMMDD) as the birth date.
fn clave_with_date(date: &str) -> String {
    format!("GOMEZA{date}09H123")
}

#[test]
fn clave_pattern() {
    let mut v = V::new();
    let good = "GOMEZA85061509H123";
    assert_eq!(good.len(), 18);
    for bad in [
        "",
        "GOMEZA8506150H123",        // 17 characters
        "GOMEZA850615091H123",      // 19 characters
        "G0MEZA85061509H123",       // a digit among the letters
        "GOMEZA85O61509H123",       // a letter in the birth date
        "GOMEZA850615O9H123",       // a letter in the entidad
        "GOMEZA85061509Z123",       // sex not H/M/X
        "GOMEZA85061509H12E",       // a letter in the final digits
        "gomeza85061509h123",       // lower case
        "GOMEZa85061509H123",       // one lower-case letter
        "GOMEZA85061509h123",       // lower-case sex
        " GOMEZA85061509H123",      // leading space
        "GOMEZA85061509H123 ",      // trailing space
        "GOMEZA85061509H123\n",     // trailing newline
        "GOMEZA 85061509H12",       // inner space
        "GOMEÑA85061509H123",       // non-ASCII letter
        "GOMEZA-850615-09H123",     // separators
        "GOMEZA85061509H123GOMEZA", // a second clave appended
    ] {
        let c = v.with_clave(bad);
        v.refuse_invalid(c, Field::ClaveElector);
    }
    let c = v.with_clave(good);
    v.accept(c);
    // Sexes H, M and X.
    for clave in ["PEREZA85061509M123", "LOPEZA85061509X123"] {
        let c = v.with_clave(clave);
        v.accept(c);
    }
}

#[test]
fn clave_birth_date_must_be_real_in_either_century() {
    let mut v = V::new();
    for bad in [
        "991301", // month 13
        "850001", // month 0
        "850100", // day 0
        "850132", // day 32
        "850431", // 31 April
        "990230", // 30 February
        "000230", // 30 February, leap year or not
        "010229", // 29 February: neither 1901 nor 2001 is a leap year
        "990229", // neither 1999 nor 2099
        "000000",
    ] {
        let c = v.with_clave(&clave_with_date(bad));
        let what = c.fields.clave_elector.clone();
        let e = v.refuse(c);
        assert!(
            matches!(
                e,
                Error::Invalid {
                    field: Field::ClaveElector,
                    ..
                }
            ),
            "{what}: {e:?}"
        );
        assert_invalid_class(&e);
    }
    for good in [
        "000229", // 2000 is a leap year (1900 is not): valid
        "960229", // 1996
        "040229", // 2004 (1904 too)
        "991231", "000101", "850615", "201130",
    ] {
        let c = v.with_clave(&clave_with_date(good));
        v.accept(c);
    }
}

#[test]
fn clave_has_no_check_digit() {
    // INE publishes no check-digit algorithm: claves differing only in their last digit (or
    // in the entidad digits) are all accepted. Any check digit would refuse 9 in 10 of them.
    let mut v = V::new();
    for d in 0..10 {
        let c = v.with_clave(&format!("RAMIRE79110309H12{d}"));
        v.accept(c);
    }
    for entidad in ["00", "33", "99"] {
        let c = v.with_clave(&format!("RAMIRE791103{entidad}M000"));
        v.accept(c);
    }
}

#[test]
fn clave_and_curp_digits_must_be_ascii() {
    let mut v = V::new();
    let ascii = "GOMEZA85061509H123";
    let c = v.with_clave(ascii);
    v.accept(c);
    for bad in [
        "GOMEZA850615\u{0660}\u{0669}H\u{0661}\u{0662}\u{0663}", // Arabic-Indic ٠٩ / ١٢٣
        "GOMEZA85061509H\u{FF11}\u{FF12}\u{FF13}",               // full-width １２３
    ] {
        let c = v.with_clave(bad);
        v.refuse_invalid(c, Field::ClaveElector);
    }
    let mut c = v.base("nacional");
    c.fields.curp = Some("GOMA850615HDFMRR0\u{0665}".into());
    v.refuse_invalid(c, Field::Curp);
}

// ---- other card fields ----------------------------------------------------------------------

/// A change to a capture, with the field it makes invalid.
type Spoil = (Field, Box<dyn Fn(&mut NewCapture)>);

#[test]
fn other_card_fields() {
    let mut v = V::new();
    let cases: Vec<Spoil> = vec![
        (
            Field::Curp,
            Box::new(|c| c.fields.curp = Some("GOMA850615HDFMRR0".into())),
        ),
        (
            Field::Curp,
            Box::new(|c| c.fields.curp = Some("goma850615hdfmrr01".into())),
        ),
        (
            Field::Ocr,
            Box::new(|c| c.fields.ocr = Some("123456789012".into())),
        ),
        (
            Field::Ocr,
            Box::new(|c| c.fields.ocr = Some("12345678901X3".into())),
        ),
        (
            Field::Ocr,
            Box::new(|c| {
                c.fields.seccion = Some(4321);
                c.fields.ocr = Some("1234567890123".into());
            }),
        ),
        (
            Field::Cic,
            Box::new(|c| c.fields.cic = Some("12345678".into())),
        ),
        (
            Field::Cic,
            Box::new(|c| c.fields.cic = Some("1234567890".into())),
        ),
        (
            Field::NumeroEmision,
            Box::new(|c| c.fields.numero_emision = Some(100)),
        ),
        (Field::Entidad, Box::new(|c| c.fields.entidad = Some(0))),
        (Field::Entidad, Box::new(|c| c.fields.entidad = Some(33))),
        (Field::Seccion, Box::new(|c| c.fields.seccion = Some(0))),
        (
            Field::Seccion,
            Box::new(|c| c.fields.seccion = Some(10_000)),
        ),
        (
            Field::Vigencia,
            Box::new(|c| c.fields.vigencia = Some(1989)),
        ),
        (
            Field::Vigencia,
            Box::new(|c| c.fields.vigencia = Some(2101)),
        ),
    ];
    for (field, set) in &cases {
        let mut c = v.base("nacional");
        set(&mut c);
        v.refuse_invalid(c, *field);
    }
    let mut c = v.base("nacional");
    c.fields.curp = Some(curp(7));
    c.fields.seccion = Some(1234);
    c.fields.ocr = Some("1234567890123".into());
    c.fields.cic = Some("123456789".into());
    c.fields.numero_emision = Some(99);
    c.fields.entidad = Some(32);
    c.fields.vigencia = Some(2100);
    v.accept(c);
}

// ---- process rules --------------------------------------------------------------------------

#[test]
fn model_must_be_accepted_by_the_process() {
    let mut v = V::new();
    for model in ["C", "D", "E", "F", "I", "Z26"] {
        let mut c = v.base("solo-gh");
        c.model = CredentialModel::parse(model).expect("model code");
        match v.refuse(c) {
            Error::ModelNotAccepted { process } => assert_eq!(process, "solo-gh"),
            other => panic!("model {model}: {other:?}"),
        }
    }
    for model in ["G", "H"] {
        let mut c = v.base("solo-gh");
        c.model = CredentialModel::parse(model).expect("model code");
        v.accept(c);
    }
    // E is fine where the process accepts it.
    let mut c = v.base("nacional");
    c.model = CredentialModel::parse("E").expect("model code");
    v.accept(c);
    // Codes that are not model codes at all.
    for bad in ["", "g", "GGGGG", "1", "G-"] {
        let e = CredentialModel::parse(bad).expect_err(bad);
        assert!(
            matches!(
                e,
                Error::Invalid {
                    field: Field::Model,
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn vigencia_against_the_cutoff() {
    let mut v = V::new();
    // A card is valid through 31 December of its vigencia year.
    for (process, cutoff, refused, accepted) in [
        ("nacional", "2022-01-01", 2021u16, 2022u16),
        ("corte-31-dic", "2022-12-31", 2021, 2022),
        ("corte-2023", "2023-01-01", 2022, 2023),
    ] {
        let mut c = v.base(process);
        c.fields.vigencia = Some(refused);
        let e = v.refuse(c);
        match &e {
            Error::CredentialExpired { cutoff: got } => {
                assert_eq!(got, cutoff, "{process}")
            }
            other => panic!("{process} vigencia {refused}: {other:?}"),
        }
        assert_invalid_class(&e);
        let mut c = v.base(process);
        c.fields.vigencia = Some(accepted);
        v.accept(c);
        let mut c = v.base(process);
        c.fields.vigencia = Some(2040);
        v.accept(c);
        let mut c = v.base(process);
        c.fields.vigencia = Some(1990);
        v.refuse(c);
    }
    // No vigencia read from the card: nothing to check.
    let c = v.base("corte-2023");
    assert!(c.fields.vigencia.is_none());
    v.accept(c);
}

#[test]
fn scope_by_entidad() {
    let mut v = V::new();
    for e in [9u8, 15] {
        let mut c = v.base("entidades");
        c.fields.entidad = Some(e);
        v.accept(c);
    }
    for e in [1u8, 14, 16, 32] {
        let mut c = v.base("entidades");
        c.fields.entidad = Some(e);
        match v.refuse(c) {
            Error::OutOfScope { field, process } => {
                assert_eq!(field, Field::Entidad);
                assert_eq!(process, "entidades");
            }
            other => panic!("entidad {e}: {other:?}"),
        }
    }
    // Unknown entidad: the check is skipped.
    let mut c = v.base("entidades");
    c.fields.seccion = Some(5);
    v.accept(c);
    // A national process takes every entidad.
    let mut c = v.base("nacional");
    c.fields.entidad = Some(14);
    v.accept(c);
}

#[test]
fn scope_by_seccion() {
    let mut v = V::new();
    for (e, s) in [(9u8, 1234u16), (15, 77)] {
        let mut c = v.base("secciones");
        c.fields.entidad = Some(e);
        c.fields.seccion = Some(s);
        v.accept(c);
    }
    for (e, s) in [(9u8, 1235u16), (9, 77), (15, 1234), (10, 1234)] {
        let mut c = v.base("secciones");
        c.fields.entidad = Some(e);
        c.fields.seccion = Some(s);
        match v.refuse(c) {
            Error::OutOfScope { field, process } => {
                assert_eq!(field, Field::Seccion);
                assert_eq!(process, "secciones");
            }
            other => panic!("({e}, {s}): {other:?}"),
        }
    }
    // One field missing (spec gap 5): the card passes only if some listed sección could be
    // its own, i.e. shares the field it does carry; with neither field the check is skipped.
    for (e, s) in [
        (None, Some(77u16)),
        (None, Some(1234)),
        (Some(15u8), None),
        (None, None),
    ] {
        let mut c = v.base("secciones");
        c.fields.entidad = e;
        c.fields.seccion = s;
        v.accept(c);
    }
    for (e, s, field) in [
        (None, Some(9_999u16), Field::Seccion),
        (Some(10u8), None, Field::Entidad),
    ] {
        let mut c = v.base("secciones");
        c.fields.entidad = e;
        c.fields.seccion = s;
        match v.refuse(c) {
            Error::OutOfScope { field: f, process } => {
                assert_eq!(f, field, "({e:?}, {s:?})");
                assert_eq!(process, "secciones");
            }
            other => panic!("({e:?}, {s:?}): {other:?}"),
        }
    }
}

/// Spec gap 1: the OCR's first 4 digits are the sección written with 4 digits, zero-padded.
#[test]
fn ocr_carries_the_seccion_zero_padded() {
    let mut v = V::new();
    for (seccion, ocr) in [
        (123u16, "0123000012345"),
        (7, "0007123456789"),
        (1234, "1234000012345"),
    ] {
        let mut c = v.base("nacional");
        c.fields.seccion = Some(seccion);
        c.fields.ocr = Some(ocr.into());
        v.accept(c);
    }
    // Not padded, or padded on the wrong side: not the sección.
    for (seccion, ocr) in [
        (123u16, "1230000012345"),
        (123, "1234000012345"),
        (7, "7000123456789"),
    ] {
        let mut c = v.base("nacional");
        c.fields.seccion = Some(seccion);
        c.fields.ocr = Some(ocr.into());
        v.refuse_invalid(c, Field::Ocr);
    }
}

#[test]
fn unknown_process() {
    let mut v = V::new();
    let c = v.base("no-existe");
    match v.refuse(c) {
        Error::UnknownProcess(p) => assert_eq!(p, "no-existe"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn process_window_with_a_manual_clock() {
    let mut v = V::new();
    let opens = datetime!(2022-01-10 00:00:00 UTC);
    let closes = datetime!(2022-03-01 00:00:00 UTC);
    for at in [
        opens - time::Duration::seconds(1),
        closes,
        closes + time::Duration::days(400),
        datetime!(2021-06-01 00:00:00 UTC),
    ] {
        v.clock.set(at);
        let c = v.base("ventana");
        match v.refuse(c) {
            Error::ProcessClosed { process } => assert_eq!(process, "ventana"),
            other => panic!("at {at}: {other:?}"),
        }
        // A process without a window is open at any time.
        let c = v.base("nacional");
        v.accept(c);
    }
    for at in [
        opens,
        opens + time::Duration::days(20),
        closes - time::Duration::seconds(1),
    ] {
        v.clock.set(at);
        let c = v.base("ventana");
        let id = v.accept(c);
        assert_eq!(v.store.manifest(&id).expect("manifest").captured_at, at);
    }
}

// ---- images ---------------------------------------------------------------------------------

fn set_image(c: &mut NewCapture, kind: PartKind, bytes: Vec<u8>) {
    match kind {
        PartKind::Front => c.images.front = bytes,
        PartKind::Back => c.images.back = bytes,
        PartKind::Selfie => c.images.selfie = bytes,
        PartKind::Signature => c.images.signature = bytes,
        PartKind::Manifest => unreachable!(),
    }
}

#[test]
fn images_empty_too_large_or_not_jpeg_or_png() {
    let mut v = V::new();
    let gif = {
        let mut g = random_bytes(2_000);
        g[..6].copy_from_slice(b"GIF89a");
        g
    };
    let webp = {
        let mut w = random_bytes(2_000);
        w[..4].copy_from_slice(b"RIFF");
        w[8..12].copy_from_slice(b"WEBP");
        w
    };
    let bmp = {
        let mut b = random_bytes(2_000);
        b[..2].copy_from_slice(b"BM");
        b
    };
    // JPEG magic, but not at the start.
    let shifted = {
        let mut j = vec![0u8];
        j.extend(jpeg(2_000));
        j
    };
    for (kind, field, max) in [
        (PartKind::Front, Field::Front, MAX_CARD_IMAGE_BYTES),
        (PartKind::Back, Field::Back, MAX_CARD_IMAGE_BYTES),
        (PartKind::Selfie, Field::Selfie, MAX_SELFIE_BYTES),
        (PartKind::Signature, Field::Signature, MAX_SIGNATURE_BYTES),
    ] {
        for bad in [
            Vec::new(),
            jpeg(max + 1),
            png(max + 1),
            gif.clone(),
            webp.clone(),
            bmp.clone(),
            shifted.clone(),
            b"%PDF-1.7 not an image".to_vec(),
        ] {
            let mut c = v.base("nacional");
            set_image(&mut c, kind, bad);
            v.refuse_invalid(c, field);
        }
        // PNG is accepted for every image.
        let mut c = v.base("nacional");
        set_image(&mut c, kind, png(5_000));
        v.accept(c);
    }
    // Every image exactly at its limit is accepted, byte for byte.
    let mut c = v.base("nacional");
    c.images.front = jpeg(MAX_CARD_IMAGE_BYTES);
    c.images.back = png(MAX_CARD_IMAGE_BYTES);
    c.images.selfie = jpeg(MAX_SELFIE_BYTES);
    c.images.signature = png(MAX_SIGNATURE_BYTES);
    let selfie = c.images.selfie.clone();
    let id = v.accept(c);
    let mut got = Vec::new();
    v.store
        .read_part(&id, PartKind::Selfie, &mut got)
        .expect("read");
    assert!(got == selfie);
}

// ---- location -------------------------------------------------------------------------------

#[test]
fn location_out_of_range() {
    let mut v = V::new();
    let loc = |lat, lon, accuracy_m| Location {
        lat,
        lon,
        accuracy_m,
    };
    for bad in [
        loc(90.000_01, -99.1, 10.0),
        loc(-90.000_01, -99.1, 10.0),
        loc(19.4, 180.000_01, 10.0),
        loc(19.4, -180.000_01, 10.0),
        loc(f64::NAN, -99.1, 10.0),
        loc(19.4, f64::INFINITY, 10.0),
        loc(19.4, -99.1, 0.0),
        loc(19.4, -99.1, -3.0),
        loc(19.4, -99.1, f64::NAN),
        loc(19.4, -99.1, f64::INFINITY),
    ] {
        let mut c = v.base("nacional");
        c.location = Some(bad);
        v.refuse_invalid(c, Field::Location);
    }
    for good in [
        loc(90.0, 180.0, 0.5),
        loc(-90.0, -180.0, 1_000.0),
        loc(19.432_607, -99.133_208, 8.0),
    ] {
        let mut c = v.base("nacional");
        c.location = Some(good);
        let id = v.accept(c);
        assert_eq!(
            v.store.manifest(&id).expect("manifest").location,
            Some(good)
        );
    }
    // No location at all is fine.
    let c = v.base("nacional");
    v.accept(c);
}

#[test]
fn the_collector_id_is_bounded() {
    let mut v = V::new();
    let too_long = "A".repeat(apoyo_sync::testkit::store::MAX_COLLECTOR_ID_LEN + 1);
    for bad in ["", too_long.as_str(), "AUX 01", "AUX-ñ"] {
        let mut c = capture_of("nacional", &clave(900));
        c.collector = Some(apoyo_sync::Collector::Auxiliar(bad.to_string()));
        match v.store.capture(c) {
            Err(Error::Invalid {
                field: Field::Collector,
                ..
            }) => {}
            other => panic!("collector {bad:?}: {other:?}"),
        }
    }
    let mut ok = capture_of("nacional", &clave(901));
    ok.collector = Some(apoyo_sync::Collector::Auxiliar("AUX-0001".into()));
    v.store.capture(ok).expect("a normal auxiliar id");
}
