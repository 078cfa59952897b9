//! The terms under which each checkpoint of a model bundle may be used: `[files.<role>.license]` in
//! `models/<variant>.toml`, kept beside the checksums, and a bundle's summary of them (the one line the CLI,
//! the server and the web page show). foley's own code license says nothing about the weights; these entries do.

use serde::{Deserialize, Serialize};

/// Whether a file's terms allow commercial use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Commercial {
    /// The terms allow it.
    Yes,
    /// The terms could not be confirmed; treat as not allowed until they are.
    Unclear,
    /// The terms forbid it (non-commercial or research-only licenses).
    No,
}

impl Commercial {
    /// `yes`, `unclear` or `no`.
    pub fn as_str(self) -> &'static str {
        match self {
            Commercial::Yes => "yes",
            Commercial::Unclear => "unclear",
            Commercial::No => "no",
        }
    }
}

/// The license of one checkpoint, as read from its model card or repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    /// SPDX identifier (`CC-BY-NC-4.0`, `MIT`); `LicenseRef-…` for terms SPDX does not list; `NOASSERTION` when
    /// the terms could not be confirmed.
    pub spdx: String,
    /// The terms' name, for people.
    pub name: String,
    /// Where the terms are.
    pub url: String,
    /// Where this entry was read (model card, README section, repository file).
    pub source: String,
    /// Whether commercial use is allowed.
    pub commercial: Commercial,
    /// One line on commercial use, with anything a user must know (conflicting statements, unconfirmed terms).
    pub note: String,
}

impl License {
    /// The identifier as shown to people: `unconfirmed` for `NOASSERTION`.
    pub fn label(&self) -> &str {
        if self.spdx == "NOASSERTION" {
            "unconfirmed"
        } else {
            &self.spdx
        }
    }

    /// What is wrong with the entry (an empty field, a `url` that is not an https link, `unclear` without
    /// `NOASSERTION` or the other way round); `None` when it is complete.
    pub fn problem(&self) -> Option<String> {
        let fields = [("spdx", &self.spdx), ("name", &self.name), ("url", &self.url), ("source", &self.source), ("note", &self.note)];
        if let Some((f, _)) = fields.iter().find(|(_, v)| v.trim().is_empty()) {
            return Some(format!("license.{f} is empty"));
        }
        if !self.url.starts_with("https://") {
            return Some(format!("license.url {:?} is not an https link", self.url));
        }
        if (self.spdx == "NOASSERTION") != (self.commercial == Commercial::Unclear) {
            return Some("commercial = \"unclear\" goes with spdx = \"NOASSERTION\" and only with it".into());
        }
        None
    }
}

/// One file of a bundle and its license (`None`: no entry in the bundle's TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileLicense {
    /// `network`, `vae`, `vocoder`, `synchformer` or `clip`.
    pub role: String,
    /// The file's name.
    pub file: String,
    /// Its license, when the bundle records one.
    pub license: Option<License>,
}

impl FileLicense {
    /// The verdict for this file: a missing entry counts as unclear.
    pub fn commercial(&self) -> Commercial {
        self.license.as_ref().map_or(Commercial::Unclear, |l| l.commercial)
    }

    /// The identifier shown to people (`unrecorded` without an entry).
    pub fn label(&self) -> &str {
        self.license.as_ref().map_or("unrecorded", |l| l.label())
    }
}

/// A bundle's licenses: every file's entry and the verdict for the bundle as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleLicenses {
    /// The bundle's name.
    pub model: String,
    /// The strictest verdict over its files: `no` if any file forbids commercial use, else `unclear` if any file's
    /// terms are unconfirmed or unrecorded, else `yes`.
    pub commercial: Commercial,
    /// One line for people: the verdict, then the files grouped by license.
    pub notice: String,
    /// Unless commercial use is allowed: the condition spelled out (which files forbid it, which are unconfirmed,
    /// that foley's own license does not cover the weights).
    pub condition: Option<String>,
    /// Every file, in role order.
    pub files: Vec<FileLicense>,
}

impl BundleLicenses {
    /// The distinct licenses of the files as shown to people, strictest first (`CC-BY-NC-4.0`, `unconfirmed`, `MIT`).
    pub fn labels(&self) -> Vec<&str> {
        groups(&self.files).into_iter().map(|(label, _)| label).collect()
    }

    /// Summarises `files` of bundle `model`.
    pub fn new(model: &str, files: Vec<FileLicense>) -> Self {
        let commercial = files.iter().map(FileLicense::commercial).max().unwrap_or(Commercial::Unclear);
        let notice = notice(model, commercial, &files);
        let condition = condition(model, &files);
        BundleLicenses { model: model.to_string(), commercial, notice, condition, files }
    }
}

/// `small_16k weights: non-commercial use only (network, vae: CC-BY-NC-4.0; clip: LicenseRef-apple-amlr;
/// vocoder, synchformer: unconfirmed)`: the verdict, then the files grouped by license, strictest first.
fn notice(model: &str, commercial: Commercial, files: &[FileLicense]) -> String {
    let verdict = match commercial {
        Commercial::No => "non-commercial use only",
        Commercial::Unclear => "commercial use not confirmed",
        Commercial::Yes => "commercial use allowed",
    };
    let parts: Vec<String> =
        groups(files).iter().map(|(label, roles)| format!("{}: {label}", roles.join(", "))).collect();
    format!("{model} weights: {verdict} ({})", parts.join("; "))
}

/// The files' licenses as (label, roles), strictest verdict first, then in role order.
fn groups(files: &[FileLicense]) -> Vec<(&str, Vec<&str>)> {
    let mut groups: Vec<(Commercial, &str, Vec<&str>)> = Vec::new();
    for f in files {
        match groups.iter_mut().find(|(_, label, _)| *label == f.label()) {
            Some((_, _, roles)) => roles.push(&f.role),
            None => groups.push((f.commercial(), f.label(), vec![&f.role])),
        }
    }
    groups.sort_by(|a, b| b.0.cmp(&a.0));
    groups.into_iter().map(|(_, label, roles)| (label, roles)).collect()
}

/// The non-commercial condition in words, or `None` when every file allows commercial use.
fn condition(model: &str, files: &[FileLicense]) -> Option<String> {
    let pick = |c: Commercial| -> (Vec<&str>, Vec<&str>) {
        let mut roles = Vec::new();
        let mut labels = Vec::new();
        for f in files.iter().filter(|f| f.commercial() == c) {
            roles.push(f.role.as_str());
            if !labels.contains(&f.label()) {
                labels.push(f.label());
            }
        }
        (roles, labels)
    };
    let (no, no_labels) = pick(Commercial::No);
    let (unclear, _) = pick(Commercial::Unclear);
    if no.is_empty() && unclear.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !no.is_empty() {
        s += &format!(
            "NOT FOR COMMERCIAL USE: the licenses of {model}'s {} ({}) allow non-commercial use only. ",
            no.join(", "),
            no_labels.join(", ")
        );
    }
    if !unclear.is_empty() {
        s += &format!(
            "The terms of {model}'s {} could not be confirmed: treat them as non-commercial until their authors say \
             otherwise. ",
            unclear.join(", ")
        );
    }
    s += "foley's own license covers foley's code, not these weights: commercial use (a product, a service, client \
          work) needs the rights holders' permission.";
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lic(spdx: &str, commercial: Commercial) -> License {
        License {
            spdx: spdx.into(),
            name: "n".into(),
            url: "https://example.org/terms".into(),
            source: "https://example.org/card".into(),
            commercial,
            note: "x".into(),
        }
    }

    fn file(role: &str, license: Option<License>) -> FileLicense {
        FileLicense { role: role.into(), file: format!("{role}.pth"), license }
    }

    #[test]
    fn the_strictest_file_decides_and_the_notice_groups_by_license() {
        let b = BundleLicenses::new(
            "m",
            vec![
                file("network", Some(lic("CC-BY-NC-4.0", Commercial::No))),
                file("vae", Some(lic("CC-BY-NC-4.0", Commercial::No))),
                file("vocoder", Some(lic("MIT", Commercial::Yes))),
                file("synchformer", Some(lic("NOASSERTION", Commercial::Unclear))),
            ],
        );
        assert_eq!(b.commercial, Commercial::No);
        assert_eq!(b.labels(), ["CC-BY-NC-4.0", "unconfirmed", "MIT"]);
        assert_eq!(b.notice, "m weights: non-commercial use only (network, vae: CC-BY-NC-4.0; synchformer: unconfirmed; vocoder: MIT)");
        let c = b.condition.unwrap();
        assert!(c.starts_with("NOT FOR COMMERCIAL USE: the licenses of m's network, vae (CC-BY-NC-4.0)"), "{c}");
        assert!(c.contains("m's synchformer could not be confirmed"), "{c}");
        let open = BundleLicenses::new("t", vec![file("network", Some(lic("MIT", Commercial::Yes)))]);
        assert_eq!(open.commercial, Commercial::Yes);
        assert_eq!(open.notice, "t weights: commercial use allowed (network: MIT)");
        assert_eq!(open.condition, None);
        let missing = BundleLicenses::new("u", vec![file("network", Some(lic("MIT", Commercial::Yes))), file("vae", None)]);
        assert_eq!(missing.commercial, Commercial::Unclear);
        assert!(missing.notice.contains("vae: unrecorded"), "{}", missing.notice);
    }

    #[test]
    fn incomplete_entries_are_named() {
        assert_eq!(lic("MIT", Commercial::Yes).problem(), None);
        let mut l = lic("MIT", Commercial::Yes);
        l.note = " ".into();
        assert!(l.problem().unwrap().contains("note"));
        let mut l = lic("MIT", Commercial::Yes);
        l.url = "http://x".into();
        assert!(l.problem().unwrap().contains("https"));
        assert!(lic("MIT", Commercial::Unclear).problem().is_some());
        assert!(lic("NOASSERTION", Commercial::No).problem().is_some());
    }
}
