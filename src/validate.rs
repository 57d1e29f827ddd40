//! Validation of a capture against the domain rules and its process, before anything is
//! stored. Every failure names the field, never its value.

use std::sync::LazyLock;

use regex::Regex;
use time::{Date, Month};

use crate::error::{Error, Field, Result};
use crate::limits::{MAX_CARD_IMAGE_BYTES, MAX_SELFIE_BYTES, MAX_SIGNATURE_BYTES};
use crate::model::{CardFields, ImageFormat, ImageFormats, Location, NewCapture, PartKind};
use crate::process::{Process, Scope, SeccionRef};

// ASCII classes only: `\d` would also match Arabic-Indic or full-width digits, letting the same
// clave in another script past the duplicate check.
// 6 letters from the name, birth date YYMMDD, 2-digit birth entidad, sex H/M/X, 3 digits.
// INE publishes no check-digit algorithm, so none is validated.
static CLAVE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z]{6}([0-9]{2})([0-9]{2})([0-9]{2})[0-9]{2}[HMX][0-9]{3}$")
        .expect("static regex")
});
// CURP: 4 letters, YYMMDD, sex, 2-letter state, 3 consonants, homoclave, check digit.
static CURP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z]{4}[0-9]{6}[HMX][A-Z]{5}[A-Z0-9][0-9]$").expect("static regex")
});

/// Checks a capture against the domain rules and `process`; returns the images' formats.
pub fn validate(c: &NewCapture, process: &Process) -> Result<ImageFormats> {
    validate_fields(&c.fields)?;
    if let Some(loc) = &c.location {
        validate_location(loc)?;
    }
    check_against_process(&c.model, &c.fields, process)?;
    Ok(ImageFormats {
        front: check_image(PartKind::Front, &c.images.front)?,
        back: check_image(PartKind::Back, &c.images.back)?,
        selfie: check_image(PartKind::Selfie, &c.images.selfie)?,
        signature: check_image(PartKind::Signature, &c.images.signature)?,
    })
}

/// The process rules for a card: accepted model, vigencia against the cutoff, scope. The
/// endpoint applies the same function to the manifest it decrypts.
pub fn check_against_process(
    model: &crate::model::CredentialModel,
    fields: &CardFields,
    process: &Process,
) -> Result<()> {
    if !process.accepted_models.contains(model) {
        return Err(Error::ModelNotAccepted {
            process: process.id.clone(),
        });
    }
    check_vigencia(fields, process)?;
    check_scope(fields, process)
}

/// Checks the card's fields on their own.
pub fn validate_fields(f: &CardFields) -> Result<()> {
    validate_clave(&f.clave_elector)?;
    if let Some(e) = f.entidad
        && !(1..=32).contains(&e)
    {
        return Err(Error::invalid(Field::Entidad, "must be 1-32"));
    }
    if let Some(s) = f.seccion
        && !(1..=9999).contains(&s)
    {
        return Err(Error::invalid(Field::Seccion, "must be 1-9999"));
    }
    if let Some(curp) = &f.curp
        && !CURP_RE.is_match(curp)
    {
        return Err(Error::invalid(Field::Curp, "does not have the CURP format"));
    }
    if let Some(ocr) = &f.ocr
        && !(ocr.len() == 13 && ocr.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::invalid(Field::Ocr, "must be 13 digits"));
    }
    if let Some(cic) = &f.cic
        && !(cic.len() == 9 && cic.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::invalid(Field::Cic, "must be 9 digits"));
    }
    if let Some(n) = f.numero_emision
        && n > 99
    {
        return Err(Error::invalid(Field::NumeroEmision, "must be 2 digits"));
    }
    if let Some(v) = f.vigencia
        && !(1990..=2100).contains(&v)
    {
        return Err(Error::invalid(Field::Vigencia, "must be a year 1990-2100"));
    }
    if let (Some(ocr), Some(s)) = (&f.ocr, f.seccion)
        && ocr.get(0..4).and_then(|p| p.parse::<u16>().ok()) != Some(s)
    {
        return Err(Error::invalid(
            Field::Ocr,
            "its first 4 digits are not the sección",
        ));
    }
    Ok(())
}

/// Checks a clave de elector: the pattern and a real birth date (either century).
pub fn validate_clave(clave: &str) -> Result<()> {
    let caps = CLAVE_RE.captures(clave).ok_or(Error::invalid(
        Field::ClaveElector,
        "does not match the 18-character pattern",
    ))?;
    let num = |i: usize| caps.get(i).and_then(|m| m.as_str().parse::<u8>().ok());
    let (Some(yy), Some(mm), Some(dd)) = (num(1), num(2), num(3)) else {
        return Err(Error::invalid(
            Field::ClaveElector,
            "does not match the 18-character pattern",
        ));
    };
    let month = Month::try_from(mm)
        .map_err(|_| Error::invalid(Field::ClaveElector, "birth month is not a month"))?;
    let real = [1900, 2000]
        .iter()
        .any(|century| Date::from_calendar_date(century + i32::from(yy), month, dd).is_ok());
    if !real {
        return Err(Error::invalid(
            Field::ClaveElector,
            "birth date is not a real date",
        ));
    }
    Ok(())
}

fn validate_location(l: &Location) -> Result<()> {
    let ok = l.lat.is_finite()
        && l.lon.is_finite()
        && l.accuracy_m.is_finite()
        && (-90.0..=90.0).contains(&l.lat)
        && (-180.0..=180.0).contains(&l.lon)
        && l.accuracy_m > 0.0;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            Field::Location,
            "latitude, longitude or accuracy out of range",
        ))
    }
}

fn check_vigencia(f: &CardFields, p: &Process) -> Result<()> {
    let Some(year) = f.vigencia else {
        return Ok(());
    };
    // Valid through 31 December of the printed year.
    let last_day = Date::from_calendar_date(i32::from(year), Month::December, 31)
        .map_err(|_| Error::invalid(Field::Vigencia, "not a year"))?;
    if last_day < p.vigencia_cutoff {
        return Err(Error::CredentialExpired {
            cutoff: p.vigencia_cutoff.to_string(),
        });
    }
    Ok(())
}

fn check_scope(f: &CardFields, p: &Process) -> Result<()> {
    match &p.scope {
        Scope::National(_) => Ok(()),
        Scope::Entidades { entidades } => match f.entidad {
            Some(e) if !entidades.contains(&e) => Err(Error::OutOfScope {
                field: Field::Entidad,
                process: p.id.clone(),
            }),
            _ => Ok(()),
        },
        Scope::Secciones { secciones } => {
            // Refuse only what cannot be in scope whatever the missing field would say: with
            // both fields the pair must be listed; with one, some listed sección must share it.
            let could_be_listed = |r: &SeccionRef| {
                f.entidad.is_none_or(|e| r.entidad == e) && f.seccion.is_none_or(|s| r.seccion == s)
            };
            if secciones.iter().any(could_be_listed) {
                return Ok(());
            }
            let field = if f.seccion.is_some() {
                Field::Seccion
            } else {
                Field::Entidad
            };
            Err(Error::OutOfScope {
                field,
                process: p.id.clone(),
            })
        }
    }
}

/// The size limit of each image part.
pub fn max_image_bytes(kind: PartKind) -> usize {
    match kind {
        PartKind::Front | PartKind::Back => MAX_CARD_IMAGE_BYTES,
        PartKind::Selfie => MAX_SELFIE_BYTES,
        PartKind::Signature | PartKind::Manifest => MAX_SIGNATURE_BYTES,
    }
}

fn field_of(kind: PartKind) -> Field {
    match kind {
        PartKind::Front => Field::Front,
        PartKind::Back => Field::Back,
        PartKind::Selfie => Field::Selfie,
        PartKind::Signature | PartKind::Manifest => Field::Signature,
    }
}

/// The PNG signature: all eight bytes (ISO/IEC 15948 §5.2).
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Whether `bytes` start with the whole PNG signature.
fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&PNG_SIGNATURE)
}

/// Whether `bytes` start like a JPEG: the SOI marker (`FF D8`) and then a marker (`FF xx`) that
/// may follow it — an APPn, DQT, DHT, SOFn, DRI or comment — never a stuffed `00`, a restart,
/// another SOI or an EOI.
fn is_jpeg(bytes: &[u8]) -> bool {
    match bytes {
        [0xff, 0xd8, 0xff, m, ..] => (0xc0..=0xfe).contains(m) && !(0xd0..=0xd9).contains(m),
        _ => false,
    }
}

/// Checks one image: non-empty, within its limit, JPEG or PNG by magic bytes.
pub fn check_image(kind: PartKind, bytes: &[u8]) -> Result<ImageFormat> {
    let field = field_of(kind);
    if bytes.is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    if bytes.len() > max_image_bytes(kind) {
        return Err(Error::invalid(field, "is larger than its size limit"));
    }
    if is_jpeg(bytes) {
        Ok(ImageFormat::Jpeg)
    } else if is_png(bytes) {
        Ok(ImageFormat::Png)
    } else {
        Err(Error::invalid(field, "is not a JPEG or PNG image"))
    }
}
