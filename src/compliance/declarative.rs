//! Declarative compliance rules read from TOML files in a `rules/`
//! directory (docs/RULES.md): each `[[rule]]` names a control and states,
//! in a small predicate language over asset fields and attributes, which
//! assets it `applies_when` and what `passes_when` means for them.
//!
//! Loading is strict on purpose: a compliance engine that silently drops a
//! rule reports a better posture than the truth, so any defect in any file
//! (TOML syntax, an unknown key, a missing key, an unknown operand, a
//! literal that can never match, a duplicate id) is a [`RuleFileError`]
//! naming the file and line, and the service does not start.
//!
//! Evaluation is three-valued: an attribute that is missing or cannot be
//! read the way a comparison needs makes that comparison *unknown*, which
//! ends as "not applicable", never as a failure (SPEC section 4). It is a
//! pure function of the [`Subject`], so the same snapshot always gives
//! byte-identical evidence.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sentryops_events::cmdb::{AssetType, Environment, LifecycleState};
use sentryops_events::compliance::{ResultStatus, Severity};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;
use uuid::Uuid;

use super::{values, Outcome, Rule, RuleInfo, Subject};

/// Why a rule file cannot be loaded: the file, the 1-based line (0 only
/// when no file could be read at all, e.g. a missing directory) and the
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RuleFileError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl RuleFileError {
    fn new(file: &str, line: usize, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            reason: reason.into(),
        }
    }
}

/// A rule defined in a rule file.
#[derive(Debug)]
pub struct DeclarativeRule {
    info: RuleInfo,
    applies_when: Option<Condition>,
    passes_when: Condition,
    /// The first attribute key `passes_when` reads, named in the evidence.
    attribute: Option<String>,
    /// Where the id is written, to point at both places of a duplicate.
    id_line: usize,
}

/// A parsed expression. Only its canonical form is ever shown (in
/// definitions and evidence), so reformatting a file changes nothing.
#[derive(Debug)]
struct Condition {
    expr: Expr,
}

impl Rule for DeclarativeRule {
    fn info(&self) -> &RuleInfo {
        &self.info
    }

    fn evaluate(&self, subject: &Subject<'_>) -> Outcome {
        let observed = observe(&self.passes_when.expr, subject);
        // The canonical form, not the file's text: reformatting a rule
        // changes neither its digest nor the evidence a run records, so
        // `verify` does not see a difference where there is none.
        let expected = self.passes_when.expr.to_string();
        let expected = expected.as_str();
        let attribute = self.attribute.as_deref();
        let verdict = |status, reason: String| {
            Outcome::new(status, attribute, observed.clone(), expected, reason)
        };
        if let Some(applies_when) = &self.applies_when {
            match applies_when.expr.evaluate(subject) {
                Truth::Known(true) => {}
                Truth::Known(false) => {
                    return verdict(
                        ResultStatus::NotApplicable,
                        "applies_when does not hold".into(),
                    )
                }
                Truth::Unknown(why) => {
                    return verdict(
                        ResultStatus::NotApplicable,
                        format!("applies_when cannot be decided: {why}"),
                    )
                }
            }
        }
        match self.passes_when.expr.evaluate(subject) {
            Truth::Known(true) => verdict(ResultStatus::Pass, "passes_when holds".into()),
            Truth::Known(false) => verdict(ResultStatus::Fail, "passes_when does not hold".into()),
            Truth::Unknown(why) => verdict(ResultStatus::NotApplicable, why),
        }
    }
}

/// Parses one file's text; `file` names it in errors and in
/// [`RuleInfo::source`].
pub fn parse_file(file: &str, text: &str) -> Result<Vec<DeclarativeRule>, RuleFileError> {
    let document: RawFile = toml::from_str(text).map_err(|error| {
        let message = error.message().trim().replace('\n', "; ");
        match error.span() {
            Some(span) => RuleFileError::new(
                file,
                line_at(text, span.start),
                format!("{message} (column {})", column_at(text, span.start)),
            ),
            // Only a file-level problem comes without a place.
            None => RuleFileError::new(file, 1, message),
        }
    })?;
    let no_rules = "the file defines no rule: add at least one [[rule]] table";
    let Some(tables) = document.rule else {
        return Err(RuleFileError::new(file, 1, no_rules));
    };
    let tables_line = line_at(text, tables.span().start);
    let tables = tables.into_inner();
    if tables.is_empty() {
        return Err(RuleFileError::new(file, tables_line, no_rules));
    }
    let mut rules = Vec::with_capacity(tables.len());
    let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
    for table in tables {
        let rule = build_rule(file, text, table)?;
        if let Some(first_line) = first_lines.get(&rule.info.id) {
            return Err(duplicate_id(file, &rule, file, *first_line));
        }
        first_lines.insert(rule.info.id.clone(), rule.id_line);
        rules.push(rule);
    }
    Ok(rules)
}

/// Every `*.toml` file in `dir`, in file-name order; other files (a
/// README) are ignored. A missing directory is an error with line 0.
pub fn load_dir(dir: &Path) -> Result<Vec<Box<dyn Rule>>, RuleFileError> {
    let dir_name = dir.display().to_string();
    let unreadable = |error: std::io::Error| {
        RuleFileError::new(
            &dir_name,
            0,
            format!("cannot read the rules directory: {error}"),
        )
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "toml")
            && path.is_file()
        {
            paths.push(path);
        }
    }
    paths.sort_by(|left, right| left.file_name().cmp(&right.file_name()));

    let mut first_places: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut rules: Vec<Box<dyn Rule>> = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|error| {
            RuleFileError::new(&file, 1, format!("cannot read the file: {error}"))
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|error| {
            let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
            let line = 1 + valid.iter().filter(|byte| **byte == b'\n').count();
            RuleFileError::new(&file, line, "the file is not valid UTF-8")
        })?;
        for rule in parse_file(&file, text)? {
            if let Some((first_file, first_line)) = first_places.get(&rule.info.id) {
                return Err(duplicate_id(&file, &rule, first_file, *first_line));
            }
            first_places.insert(rule.info.id.clone(), (file.clone(), rule.id_line));
            rules.push(Box::new(rule));
        }
    }
    Ok(rules)
}

fn duplicate_id(
    file: &str,
    rule: &DeclarativeRule,
    first_file: &str,
    first_line: usize,
) -> RuleFileError {
    RuleFileError::new(
        file,
        rule.id_line,
        format!(
            "duplicate rule id {:?}: already defined at {first_file}:{first_line}",
            rule.info.id
        ),
    )
}

// ---------------------------------------------------------------------------
// The file format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rule: Option<Spanned<Vec<Spanned<RawRule>>>>,
}

/// Every key optional here so that a missing one is reported by us, at the
/// line of its `[[rule]]` header, rather than by serde without a place.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    framework: Option<Spanned<String>>,
    control: Option<Spanned<String>>,
    severity: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    remediation: Option<Spanned<String>>,
    family: Option<Spanned<String>>,
    applies_when: Option<Spanned<String>>,
    passes_when: Option<Spanned<String>>,
}

const DEFAULT_FAMILY: &str = "custom";

fn build_rule(
    file: &str,
    text: &str,
    table: Spanned<RawRule>,
) -> Result<DeclarativeRule, RuleFileError> {
    let table_line = line_at(text, table.span().start);
    let raw = table.into_inner();
    let label = raw.id.as_ref().map_or_else(
        || "[[rule]]".to_owned(),
        |id| format!("rule {:?}", id.get_ref()),
    );
    let required = |value: Option<Spanned<String>>, key: &str| {
        value.ok_or_else(|| {
            RuleFileError::new(
                file,
                table_line,
                format!("{label} is missing the required key `{key}`"),
            )
        })
    };
    let id = required(raw.id, "id")?;
    let title = required(raw.title, "title")?;
    let framework = required(raw.framework, "framework")?;
    let control = required(raw.control, "control")?;
    let severity = required(raw.severity, "severity")?;
    let description = required(raw.description, "description")?;
    let remediation = required(raw.remediation, "remediation")?;
    let passes_when = required(raw.passes_when, "passes_when")?;

    let id_line = line_at(text, id.span().start);
    let id = id.into_inner();
    if !is_valid_id(&id) {
        return Err(RuleFileError::new(
            file,
            id_line,
            format!(
                "invalid rule id {id:?}: use 1 to 64 lowercase letters, digits and hyphens, \
                 starting with a letter or digit"
            ),
        ));
    }
    if title.get_ref().trim().is_empty() {
        return Err(RuleFileError::new(
            file,
            line_at(text, title.span().start),
            "title must not be empty",
        ));
    }
    let severity = match Severity::parse(severity.get_ref()) {
        Some(parsed) => parsed,
        None => {
            return Err(RuleFileError::new(
                file,
                line_at(text, severity.span().start),
                format!(
                    "invalid severity {:?}: expected low, medium, high or critical",
                    severity.get_ref()
                ),
            ))
        }
    };
    let applies_when = raw
        .applies_when
        .map(|value| parse_condition(file, text, "applies_when", value))
        .transpose()?;
    let passes_when = parse_condition(file, text, "passes_when", passes_when)?;

    let definition = match &applies_when {
        Some(applies_when) => format!(
            "applies_when: {}; passes_when: {}",
            applies_when.expr, passes_when.expr
        ),
        None => format!("passes_when: {}", passes_when.expr),
    };
    let attribute = first_attribute(&passes_when.expr).map(str::to_owned);
    Ok(DeclarativeRule {
        info: RuleInfo {
            id,
            title: title.into_inner(),
            framework: framework.into_inner(),
            control: control.into_inner(),
            severity,
            description: description.into_inner(),
            remediation: remediation.into_inner(),
            family: raw
                .family
                .map_or_else(|| DEFAULT_FAMILY.to_owned(), Spanned::into_inner),
            source: file.to_owned(),
            definition,
        },
        applies_when,
        passes_when,
        attribute,
        id_line,
    })
}

/// `[a-z0-9][a-z0-9-]{0,63}`.
fn is_valid_id(id: &str) -> bool {
    let allowed = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    match id.as_bytes().split_first() {
        Some((first, rest)) => {
            allowed(first)
                && rest.len() <= 63
                && rest.iter().all(|byte| allowed(byte) || *byte == b'-')
        }
        None => false,
    }
}

fn parse_condition(
    file: &str,
    text: &str,
    key: &str,
    value: Spanned<String>,
) -> Result<Condition, RuleFileError> {
    let line = line_at(text, value.span().start);
    let source = value.into_inner();
    let expr = parse_expression(&source).map_err(|error| {
        RuleFileError::new(
            file,
            line,
            format!(
                "{key}: {} at {}",
                error.message,
                position_in(&source, error.offset)
            ),
        )
    })?;
    Ok(Condition { expr })
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
}

/// The 1-based column (in characters) of a byte offset within its line.
fn column_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    let bytes = &text.as_bytes()[..end];
    let line_start = bytes
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = &bytes[line_start..];
    1 + std::str::from_utf8(line).map_or(line.len(), |prefix| prefix.chars().count())
}

/// Where an offset lies in an expression, for error reasons: the column,
/// and the expression's own line when it spans several.
fn position_in(source: &str, offset: usize) -> String {
    let line = line_at(source, offset);
    let column = column_at(source, offset);
    if line == 1 {
        format!("column {column}")
    } else {
        format!("line {line}, column {column} of the expression")
    }
}

// ---------------------------------------------------------------------------
// The expression language: syntax tree

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Test(Test),
}

#[derive(Debug, Clone, PartialEq)]
struct Test {
    operand: Operand,
    check: Check,
}

#[derive(Debug, Clone, PartialEq)]
struct Operand {
    field: Field,
    days: Option<DayCount>,
    /// As written in the file (`asset_type`, `attributes.x`), used as the
    /// evidence key.
    spelling: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    AssetType,
    Environment,
    LifecycleState,
    Name,
    ShortCode,
    Location,
    OwnerId,
    Tags,
    OwnerMfaEnabled,
    OwnerActive,
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayCount {
    /// Days since the date.
    AgeDays,
    /// Days until the date.
    DaysUntil,
}

#[derive(Debug, Clone, PartialEq)]
enum Check {
    Compare(CompareOp, Literal),
    Is(IsWhat),
    In(Vec<Literal>),
    Contains(Literal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IsWhat {
    True,
    False,
    Set,
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// What an operand holds, which decides the comparisons that make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One of an enum's wire spellings (type, environment, lifecycle_state).
    Choice,
    Text,
    OwnerId,
    TagList,
    Flag,
    /// Any JSON: read as the literal it is compared with.
    Attribute,
    Days,
}

impl Field {
    fn canonical(&self) -> String {
        match self {
            Field::AssetType => "type".into(),
            Field::Environment => "environment".into(),
            Field::LifecycleState => "lifecycle_state".into(),
            Field::Name => "name".into(),
            Field::ShortCode => "short_code".into(),
            Field::Location => "location".into(),
            Field::OwnerId => "owner_id".into(),
            Field::Tags => "tags".into(),
            Field::OwnerMfaEnabled => "owner.mfa_enabled".into(),
            Field::OwnerActive => "owner.active".into(),
            Field::Attribute(key) => format!("attributes.{key}"),
        }
    }

    fn reads_owner(&self) -> bool {
        matches!(self, Field::OwnerMfaEnabled | Field::OwnerActive)
    }

    /// The raw value the field holds for `subject`; `null` when missing.
    fn read(&self, subject: &Subject<'_>) -> Value {
        let asset = subject.asset;
        let optional_text = |text: &Option<String>| text.clone().map_or(Value::Null, Value::from);
        match self {
            Field::AssetType => asset.asset_type.as_str().into(),
            Field::Environment => asset.environment.as_str().into(),
            Field::LifecycleState => asset.lifecycle_state.as_str().into(),
            Field::Name => asset.name.clone().into(),
            Field::ShortCode => asset.short_code.clone().into(),
            Field::Location => optional_text(&asset.location),
            Field::OwnerId => asset
                .owner_id
                .map_or(Value::Null, |owner| owner.hyphenated().to_string().into()),
            Field::Tags => asset.tags.clone().into(),
            Field::OwnerMfaEnabled => subject
                .owner
                .map_or(Value::Null, |owner| owner.mfa_enabled.into()),
            Field::OwnerActive => subject
                .owner
                .map_or(Value::Null, |owner| owner.active.into()),
            Field::Attribute(key) => asset.attributes.get(key).cloned().unwrap_or(Value::Null),
        }
    }

    /// For an enum field: whether `text` is one of its spellings, and the
    /// spellings it accepts.
    fn choice(&self, text: &str) -> Option<(bool, String)> {
        match self {
            Field::AssetType => Some((AssetType::parse(text).is_some(), AssetType::expected())),
            Field::Environment => {
                Some((Environment::parse(text).is_some(), Environment::expected()))
            }
            Field::LifecycleState => Some((
                LifecycleState::parse(text).is_some(),
                LifecycleState::expected(),
            )),
            _ => None,
        }
    }
}

impl Operand {
    fn kind(&self) -> Kind {
        if self.days.is_some() {
            return Kind::Days;
        }
        match self.field {
            Field::AssetType | Field::Environment | Field::LifecycleState => Kind::Choice,
            Field::Name | Field::ShortCode | Field::Location => Kind::Text,
            Field::OwnerId => Kind::OwnerId,
            Field::Tags => Kind::TagList,
            Field::OwnerMfaEnabled | Field::OwnerActive => Kind::Flag,
            Field::Attribute(_) => Kind::Attribute,
        }
    }

    fn canonical(&self) -> String {
        match self.days {
            Some(days) => format!("{}({})", days.name(), self.field.canonical()),
            None => self.field.canonical(),
        }
    }
}

impl DayCount {
    fn name(self) -> &'static str {
        match self {
            DayCount::AgeDays => "age_days",
            DayCount::DaysUntil => "days_until",
        }
    }

    /// The day count for `subject`, or `None` when `raw` is not a date.
    fn count(self, raw: &Value, subject: &Subject<'_>) -> Option<f64> {
        let moment = values::moment(raw)?;
        Some(match self {
            DayCount::AgeDays => values::days_between(moment, subject.now),
            DayCount::DaysUntil => values::days_between(subject.now, moment),
        })
    }
}

impl CompareOp {
    fn is_ordering(self) -> bool {
        !matches!(self, CompareOp::Eq | CompareOp::Ne)
    }

    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering == Ordering::Equal,
            CompareOp::Ne => ordering != Ordering::Equal,
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::Le => ordering != Ordering::Greater,
            CompareOp::Gt => ordering == Ordering::Greater,
            CompareOp::Ge => ordering != Ordering::Less,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

impl IsWhat {
    fn word(self) -> &'static str {
        match self {
            IsWhat::True => "true",
            IsWhat::False => "false",
            IsWhat::Set => "set",
            IsWhat::Missing => "missing",
        }
    }
}

impl Literal {
    fn kind_name(&self) -> &'static str {
        match self {
            Literal::Text(_) => "a string",
            Literal::Number(_) => "a number",
            Literal::Flag(_) => "a boolean",
        }
    }

    fn same_kind(&self, other: &Literal) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

// The canonical rendering is what `RuleInfo::definition` holds (and the
// digest hashes): whitespace, aliases and redundant parentheses in the file
// vanish, every literal and threshold stays.

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(items) => write_joined(f, items, "and"),
            Expr::Or(items) => write_joined(f, items, "or"),
            Expr::Not(inner) => write!(f, "not ({inner})"),
            Expr::Test(test) => write!(f, "{} {}", test.operand.canonical(), test.check),
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, items: &[Expr], word: &str) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            write!(f, " {word} ")?;
        }
        write!(f, "({item})")?;
    }
    Ok(())
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Compare(op, literal) => write!(f, "{} {literal}", op.symbol()),
            Check::Is(what) => write!(f, "is {}", what.word()),
            Check::In(literals) => {
                f.write_str("in [")?;
                for (index, literal) in literals.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{literal}")?;
                }
                f.write_str("]")
            }
            Check::Contains(literal) => write!(f, "contains {literal}"),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(text) => {
                f.write_str("\"")?;
                for ch in text.chars() {
                    if ch == '"' || ch == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{ch}")?;
                }
                f.write_str("\"")
            }
            Literal::Number(number) => write!(f, "{number}"),
            Literal::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The expression language: evaluation

/// A three-valued result; `Unknown` carries the first reason it could not
/// be decided, which becomes the evidence's reason.
#[derive(Debug, Clone, PartialEq)]
enum Truth {
    Known(bool),
    Unknown(String),
}

impl Expr {
    fn evaluate(&self, subject: &Subject<'_>) -> Truth {
        match self {
            Expr::And(items) => combine(items, subject, false),
            Expr::Or(items) => combine(items, subject, true),
            Expr::Not(inner) => match inner.evaluate(subject) {
                Truth::Known(value) => Truth::Known(!value),
                unknown => unknown,
            },
            Expr::Test(test) => test.evaluate(subject),
        }
    }
}

/// `and` (`decisive` false) or `or` (`decisive` true): the decisive value
/// anywhere wins, else any unknown makes the whole unknown.
fn combine(items: &[Expr], subject: &Subject<'_>, decisive: bool) -> Truth {
    let mut unknown = None;
    for item in items {
        match item.evaluate(subject) {
            Truth::Known(value) if value == decisive => return Truth::Known(decisive),
            Truth::Known(_) => {}
            Truth::Unknown(why) => {
                unknown.get_or_insert(why);
            }
        }
    }
    unknown.map_or(Truth::Known(!decisive), Truth::Unknown)
}

impl Test {
    fn evaluate(&self, subject: &Subject<'_>) -> Truth {
        let operand = &self.operand;
        let raw = operand.field.read(subject);
        if let Check::Is(what @ (IsWhat::Set | IsWhat::Missing)) = self.check {
            let set = match operand.field {
                Field::Tags => raw.as_array().is_some_and(|tags| !tags.is_empty()),
                _ => !raw.is_null(),
            };
            return Truth::Known(set == (what == IsWhat::Set));
        }
        if operand.field.reads_owner() && subject.owner.is_none() {
            return Truth::Unknown(format!(
                "{} is unknown: the asset has no owner",
                operand.canonical()
            ));
        }
        let value = match operand.days {
            Some(days) => match days.count(&raw, subject) {
                Some(count) => Value::from(count),
                None => {
                    return Truth::Unknown(format!(
                        "{} is missing or not a date",
                        operand.field.canonical()
                    ))
                }
            },
            None => raw,
        };
        let unreadable = |what: &str| {
            Truth::Unknown(format!("{} is missing or not {what}", operand.canonical()))
        };
        match &self.check {
            Check::Compare(op, literal) if op.is_ordering() => {
                let Literal::Number(threshold) = literal else {
                    return unreadable("a number");
                };
                match values::number(&value).and_then(|number| number.partial_cmp(threshold)) {
                    Some(ordering) => Truth::Known(op.accepts(ordering)),
                    None => unreadable("a number"),
                }
            }
            Check::Compare(op, literal) => match equals(&value, literal) {
                Some(equal) => Truth::Known(equal == (*op == CompareOp::Eq)),
                None => unreadable(literal.kind_name()),
            },
            Check::In(literals) => {
                let mut readable = false;
                for literal in literals {
                    match equals(&value, literal) {
                        Some(true) => return Truth::Known(true),
                        Some(false) => readable = true,
                        None => {}
                    }
                }
                match (readable, literals.first()) {
                    (false, Some(literal)) => unreadable(literal.kind_name()),
                    _ => Truth::Known(false),
                }
            }
            Check::Is(what) => match values::boolean(&value) {
                Some(flag) => Truth::Known(flag == (*what == IsWhat::True)),
                None => unreadable("a boolean"),
            },
            Check::Contains(Literal::Text(wanted)) => match value.as_array() {
                Some(entries) => {
                    Truth::Known(entries.iter().any(|entry| entry.as_str() == Some(wanted)))
                }
                None => unreadable("a list"),
            },
            Check::Contains(Literal::Number(port)) => match values::ports(&value) {
                Some(ports) => Truth::Known(ports.iter().any(|open| f64::from(*open) == *port)),
                None => unreadable("a port list"),
            },
            Check::Contains(Literal::Flag(_)) => unreadable("a list"),
        }
    }
}

/// Whether `value` equals `literal`, read as the literal's kind; `None`
/// when it cannot be read so.
fn equals(value: &Value, literal: &Literal) -> Option<bool> {
    match literal {
        Literal::Text(text) => value.as_str().map(|held| held == text),
        Literal::Number(number) => values::number(value).map(|held| held == *number),
        Literal::Flag(flag) => values::boolean(value).map(|held| held == *flag),
    }
}

/// Each operand `expr` reads, by its spelling, with the raw value it held
/// (and a day count's value under its function spelling).
fn observe(expr: &Expr, subject: &Subject<'_>) -> Value {
    let mut observed = Map::new();
    visit_tests(expr, &mut |test| {
        let operand = &test.operand;
        let raw = operand.field.read(subject);
        if let Some(days) = operand.days {
            let count = days.count(&raw, subject).map_or(Value::Null, Value::from);
            observed.insert(operand.canonical(), count);
            observed.insert(operand.field.canonical(), raw);
        } else {
            observed.insert(operand.canonical(), raw);
        }
    });
    Value::Object(observed)
}

fn first_attribute(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().find_map(first_attribute),
        Expr::Not(inner) => first_attribute(inner),
        Expr::Test(test) => match &test.operand.field {
            Field::Attribute(key) => Some(key.as_str()),
            _ => None,
        },
    }
}

fn visit_tests(expr: &Expr, visit: &mut dyn FnMut(&Test)) {
    match expr {
        Expr::And(items) | Expr::Or(items) => {
            for item in items {
                visit_tests(item, visit);
            }
        }
        Expr::Not(inner) => visit_tests(inner, visit),
        Expr::Test(test) => visit(test),
    }
}

// ---------------------------------------------------------------------------
// The expression language: lexer and parser

/// A syntax or validation error at a byte offset of the expression.
#[derive(Debug, Clone, PartialEq)]
struct ExprError {
    offset: usize,
    message: String,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Compare(CompareOp),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(word) => write!(f, "`{word}`"),
            Token::Text(text) => write!(f, "{}", Literal::Text(text.clone())),
            Token::Number(number) => write!(f, "`{number}`"),
            Token::Compare(op) => write!(f, "`{}`", op.symbol()),
            Token::Open => f.write_str("`(`"),
            Token::Close => f.write_str("`)`"),
            Token::OpenList => f.write_str("`[`"),
            Token::CloseList => f.write_str("`]`"),
            Token::Comma => f.write_str("`,`"),
        }
    }
}

#[derive(Debug, Clone)]
struct Lexeme {
    token: Token,
    offset: usize,
}

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "is", "in", "contains", "true", "false", "set", "missing",
];

const OPERANDS: &str =
    "type, asset_type, environment, lifecycle_state, name, short_code, location, \
                        owner_id, tags, owner.mfa_enabled, owner.active, attributes.<key>, \
                        age_days(attributes.<key>) or days_until(attributes.<key>)";

fn lex(source: &str) -> Result<Vec<Lexeme>, ExprError> {
    let mut lexemes = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some(&(offset, ch)) = chars.peek() {
        if ch.is_whitespace() {
            chars.next();
            continue;
        }

        let token = match ch {
            '(' | ')' | '[' | ']' | ',' => {
                chars.next();
                match ch {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenList,
                    ']' => Token::CloseList,
                    _ => Token::Comma,
                }
            }
            '=' if consume_pair(&mut chars, '=') => Token::Compare(CompareOp::Eq),
            '=' => return Err(ExprError::new(offset, "`=` is not an operator; use `==`")),
            '!' if consume_pair(&mut chars, '=') => Token::Compare(CompareOp::Ne),
            '!' => {
                return Err(ExprError::new(
                    offset,
                    "`!` is not an operator; use `!=` or `not`",
                ))
            }
            '<' if consume_pair(&mut chars, '=') => Token::Compare(CompareOp::Le),
            '<' => Token::Compare(CompareOp::Lt),
            '>' if consume_pair(&mut chars, '=') => Token::Compare(CompareOp::Ge),
            '>' => Token::Compare(CompareOp::Gt),
            '"' => Token::Text(lex_string(source, &mut chars)?),
            '-' | '0'..='9' => Token::Number(lex_number(source, &mut chars)?),
            _ if ch.is_ascii_alphabetic() || ch == '_' => {
                let mut word = String::new();
                while let Some((_, next)) = chars.next_if(|&(_, next)| {
                    next.is_ascii_alphanumeric() || next == '_' || next == '.'
                }) {
                    word.push(next);
                }
                // `-` glued to a word would otherwise start a number and
                // read as a malformed one; `attributes.patch-level` is the
                // likely mistake.
                if let Some(&(dash, '-')) = chars.peek() {
                    return Err(ExprError::new(
                        dash,
                        format!(
                            "unexpected character `-` after `{word}`: operands and attribute \
                             keys use letters, digits and `_`"
                        ),
                    ));
                }
                Token::Word(word)
            }
            _ => {
                return Err(ExprError::new(
                    offset,
                    format!("unexpected character `{ch}`"),
                ))
            }
        };
        lexemes.push(Lexeme { token, offset });
    }
    Ok(lexemes)
}

type Chars<'s> = std::iter::Peekable<std::str::CharIndices<'s>>;

/// Consumes the current character and, when it comes next, `wanted`:
/// whether the two-character operator was there.
fn consume_pair(chars: &mut Chars<'_>, wanted: char) -> bool {
    chars.next();
    chars.next_if(|&(_, next)| next == wanted).is_some()
}

fn consume_digits(chars: &mut Chars<'_>, text: &mut String) -> usize {
    let mut count = 0;
    while let Some((_, digit)) = chars.next_if(|&(_, ch)| ch.is_ascii_digit()) {
        text.push(digit);
        count += 1;
    }
    count
}

/// A double-quoted string whose only escapes are `\"` and `\\`.
fn lex_string(source: &str, chars: &mut Chars<'_>) -> Result<String, ExprError> {
    let start = chars.next().map_or(source.len(), |(offset, _)| offset);
    let mut text = String::new();
    loop {
        match chars.next() {
            None => return Err(ExprError::new(start, "unterminated string")),
            Some((_, '"')) => return Ok(text),
            Some((offset, '\\')) => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => text.push(escaped),
                Some((_, other)) => {
                    return Err(ExprError::new(
                        offset,
                        format!("unsupported escape `\\{other}` (only `\\\"` and `\\\\`)"),
                    ))
                }
                None => return Err(ExprError::new(start, "unterminated string")),
            },
            Some((_, ch)) => text.push(ch),
        }
    }
}

/// `-?[0-9]+(\.[0-9]+)?`.
fn lex_number(source: &str, chars: &mut Chars<'_>) -> Result<f64, ExprError> {
    let start = chars.peek().map_or(source.len(), |&(offset, _)| offset);
    let malformed = || ExprError::new(start, "malformed number");
    let mut text = String::new();
    if let Some((_, minus)) = chars.next_if(|&(_, ch)| ch == '-') {
        text.push(minus);
    }

    if consume_digits(chars, &mut text) == 0 {
        return Err(malformed());
    }
    if let Some((_, point)) = chars.next_if(|&(_, ch)| ch == '.') {
        text.push(point);
        if consume_digits(chars, &mut text) == 0 {
            return Err(malformed());
        }
    }
    if chars
        .peek()
        .is_some_and(|&(_, ch)| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
    {
        return Err(malformed());
    }
    match text.parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        _ => Err(ExprError::new(start, "number out of range")),
    }
}

fn parse_expression(source: &str) -> Result<Expr, ExprError> {
    let lexemes = lex(source)?;
    if lexemes.is_empty() {
        return Err(ExprError::new(0, "empty expression"));
    }
    let mut parser = Parser {
        lexemes,
        position: 0,
        end: source.len(),
    };
    let expr = parser.disjunction()?;
    match parser.peek() {
        None => Ok(expr),
        Some(Lexeme {
            token: Token::Close,
            offset,
        }) => Err(ExprError::new(*offset, "unbalanced `)`: no `(` to close")),
        Some(Lexeme { token, offset }) => Err(ExprError::new(
            *offset,
            format!("unexpected {token} after a complete expression (missing `and` or `or`?)"),
        )),
    }
}

/// Recursive descent: `or` binds loosest, then `and`, then `not`.
struct Parser {
    lexemes: Vec<Lexeme>,
    position: usize,
    /// The source length: where "unexpected end" errors point.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lexeme> {
        self.lexemes.get(self.position)
    }

    fn next(&mut self) -> Option<Lexeme> {
        let lexeme = self.lexemes.get(self.position).cloned();
        if lexeme.is_some() {
            self.position += 1;
        }
        lexeme
    }

    fn next_is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Lexeme { token: Token::Word(found), .. }) if found == word)
    }

    /// The next lexeme, or an error naming what was expected at the end.
    fn require(&mut self, expected: &str) -> Result<Lexeme, ExprError> {
        self.next().ok_or_else(|| {
            ExprError::new(
                self.end,
                format!("unexpected end of expression: expected {expected}"),
            )
        })
    }

    fn disjunction(&mut self) -> Result<Expr, ExprError> {
        let mut items = vec![self.conjunction()?];
        while self.next_is_word("or") {
            self.position += 1;
            items.push(self.conjunction()?);
        }
        Ok(flatten(items, true))
    }

    fn conjunction(&mut self) -> Result<Expr, ExprError> {
        let mut items = vec![self.negation()?];
        while self.next_is_word("and") {
            self.position += 1;
            items.push(self.negation()?);
        }
        Ok(flatten(items, false))
    }

    fn negation(&mut self) -> Result<Expr, ExprError> {
        if self.next_is_word("not") {
            self.position += 1;
            return Ok(Expr::Not(Box::new(self.negation()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        if let Some(Lexeme {
            token: Token::Open,
            offset,
        }) = self.peek().cloned()
        {
            self.position += 1;
            let inner = self.disjunction()?;
            return match self.next() {
                Some(Lexeme {
                    token: Token::Close,
                    ..
                }) => Ok(inner),
                None => Err(ExprError::new(offset, "unbalanced `(`: no `)` closes it")),
                Some(Lexeme { token, offset }) => Err(ExprError::new(
                    offset,
                    format!("expected `)`, `and` or `or`, found {token}"),
                )),
            };
        }
        self.test().map(Expr::Test)
    }

    fn test(&mut self) -> Result<Test, ExprError> {
        let operand = self.operand()?;
        let after = format!(
            "a comparison (==, !=, <, <=, >, >=, is, in, contains) after `{}`",
            operand.spelling
        );
        let Lexeme { token, offset } = self.require(&after)?;
        let check = match token {
            Token::Compare(op) => {
                let (mut literal, literal_offset) = self.literal()?;
                validate_compare(&operand, op, offset, &mut literal, literal_offset)?;
                Check::Compare(op, literal)
            }
            Token::Word(word) if word == "is" => {
                let Lexeme { token, offset } = self.require("true, false, set or missing")?;
                let what = match token {
                    Token::Word(word) if word == "true" => IsWhat::True,
                    Token::Word(word) if word == "false" => IsWhat::False,
                    Token::Word(word) if word == "set" => IsWhat::Set,
                    Token::Word(word) if word == "missing" => IsWhat::Missing,
                    other => {
                        return Err(ExprError::new(
                            offset,
                            format!(
                                "expected true, false, set or missing after `is`, found {other}"
                            ),
                        ))
                    }
                };
                validate_is(&operand, what, offset)?;
                Check::Is(what)
            }
            Token::Word(word) if word == "in" => Check::In(self.list(&operand)?),
            Token::Word(word) if word == "contains" => {
                let (literal, literal_offset) = self.literal()?;
                validate_contains(&operand, &literal, literal_offset)?;
                Check::Contains(literal)
            }
            other => {
                return Err(ExprError::new(
                    offset,
                    format!("expected {after}, found {other}"),
                ))
            }
        };
        Ok(Test { operand, check })
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let Lexeme { token, offset } = self.require("an operand")?;
        let Token::Word(word) = token else {
            return Err(ExprError::new(
                offset,
                format!("expected an operand, found {token}"),
            ));
        };
        let days = match word.as_str() {
            "age_days" => Some(DayCount::AgeDays),
            "days_until" => Some(DayCount::DaysUntil),
            _ => None,
        };
        let Some(days) = days else {
            let field = field_named(&word, offset)?;
            return Ok(Operand {
                field,
                days: None,
                spelling: word,
            });
        };
        let function = days.name();
        match self.require(&format!("`(` after {function}"))? {
            Lexeme {
                token: Token::Open, ..
            } => {}
            Lexeme { token, offset } => {
                return Err(ExprError::new(
                    offset,
                    format!("expected `(` after {function}, found {token}"),
                ))
            }
        }
        let Lexeme { token, offset } =
            self.require(&format!("an attribute inside {function}(...)"))?;
        let field = match token {
            Token::Word(inner) => field_named(&inner, offset)?,
            other => {
                return Err(ExprError::new(
                    offset,
                    format!("expected an operand, found {other}"),
                ))
            }
        };
        if !matches!(field, Field::Attribute(_)) {
            return Err(ExprError::new(
                offset,
                format!("{function}(...) reads a date attribute: use {function}(attributes.<key>)"),
            ));
        }
        match self.require(&format!("`)` to close {function}(...)"))? {
            Lexeme {
                token: Token::Close,
                ..
            } => {}
            Lexeme { token, offset } => {
                return Err(ExprError::new(
                    offset,
                    format!("expected `)` to close {function}(...), found {token}"),
                ))
            }
        }
        Ok(Operand {
            spelling: format!("{function}({})", field.canonical()),
            field,
            days: Some(days),
        })
    }

    fn literal(&mut self) -> Result<(Literal, usize), ExprError> {
        let expected = "a literal (a \"string\", a number, true or false)";
        let Lexeme { token, offset } = self.require(expected)?;
        let literal = match token {
            Token::Text(text) => Literal::Text(text),
            Token::Number(number) => Literal::Number(number),
            Token::Word(word) if word == "true" => Literal::Flag(true),
            Token::Word(word) if word == "false" => Literal::Flag(false),
            other => {
                return Err(ExprError::new(
                    offset,
                    format!("expected {expected}, found {other}"),
                ))
            }
        };
        Ok((literal, offset))
    }

    /// `[lit, lit, ...]`: at least one, all of one kind.
    fn list(&mut self, operand: &Operand) -> Result<Vec<Literal>, ExprError> {
        match self.require("`[` after `in`")? {
            Lexeme {
                token: Token::OpenList,
                ..
            } => {}
            Lexeme { token, offset } => {
                return Err(ExprError::new(
                    offset,
                    format!("expected `[` after `in`, found {token}"),
                ))
            }
        }
        let mut literals: Vec<Literal> = Vec::new();
        loop {
            if literals.is_empty() {
                if let Some(Lexeme {
                    token: Token::CloseList,
                    offset,
                }) = self.peek()
                {
                    return Err(ExprError::new(*offset, "`in` needs at least one value"));
                }
            }
            let (mut literal, offset) = self.literal()?;
            if let Some(first) = literals.first() {
                if !literal.same_kind(first) {
                    return Err(ExprError::new(
                        offset,
                        format!(
                            "every value in the list must be of one kind: {} after {}",
                            literal.kind_name(),
                            first.kind_name()
                        ),
                    ));
                }
            }
            validate_equality(operand, &mut literal, offset)?;
            literals.push(literal);
            match self.require("`,` or `]`")? {
                Lexeme {
                    token: Token::Comma,
                    ..
                } => {}
                Lexeme {
                    token: Token::CloseList,
                    ..
                } => return Ok(literals),
                Lexeme { token, offset } => {
                    return Err(ExprError::new(
                        offset,
                        format!("expected `,` or `]`, found {token}"),
                    ))
                }
            }
        }
    }
}

/// One item as itself; several as an `or` (`disjunction`) or an `and`,
/// splicing in nested items of the same operator so that redundant
/// parentheses leave no trace in the canonical definition.
fn flatten(mut items: Vec<Expr>, disjunction: bool) -> Expr {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::Or(inner) if disjunction => flat.extend(inner),
            Expr::And(inner) if !disjunction => flat.extend(inner),
            other => flat.push(other),
        }
    }
    if disjunction {
        Expr::Or(flat)
    } else {
        Expr::And(flat)
    }
}

fn field_named(word: &str, offset: usize) -> Result<Field, ExprError> {
    let field = match word {
        "type" | "asset_type" => Field::AssetType,
        "environment" => Field::Environment,
        "lifecycle_state" => Field::LifecycleState,
        "name" => Field::Name,
        "short_code" => Field::ShortCode,
        "location" => Field::Location,
        "owner_id" => Field::OwnerId,
        "tags" => Field::Tags,
        "owner.mfa_enabled" => Field::OwnerMfaEnabled,
        "owner.active" => Field::OwnerActive,
        _ => {
            if let Some(key) = word.strip_prefix("attributes.") {
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
                {
                    return Err(ExprError::new(
                        offset,
                        format!("invalid attribute key `{key}`: use letters, digits and `_`"),
                    ));
                }
                return Ok(Field::Attribute(key.to_owned()));
            }
            if KEYWORDS.contains(&word) {
                return Err(ExprError::new(
                    offset,
                    format!("expected an operand, found `{word}`"),
                ));
            }
            return Err(ExprError::new(
                offset,
                format!("unknown operand `{word}` (expected {OPERANDS})"),
            ));
        }
    };
    Ok(field)
}

// Load-time checks: a comparison that can never be true for any asset (a
// misspelled environment, a string against an ordering) is a defect in
// the rule, not a fact about the fleet, so it stops loading.

fn validate_compare(
    operand: &Operand,
    op: CompareOp,
    op_offset: usize,
    literal: &mut Literal,
    literal_offset: usize,
) -> Result<(), ExprError> {
    if !op.is_ordering() {
        return validate_equality(operand, literal, literal_offset);
    }
    if !matches!(literal, Literal::Number(_)) {
        return Err(ExprError::new(
            literal_offset,
            format!(
                "`{}` compares numbers, but {literal} is {}",
                op.symbol(),
                literal.kind_name()
            ),
        ));
    }
    match operand.kind() {
        Kind::Attribute | Kind::Days => Ok(()),
        _ => Err(ExprError::new(
            op_offset,
            format!(
                "`{}` compares numbers, but `{}` is not a number",
                op.symbol(),
                operand.spelling
            ),
        )),
    }
}

/// `==`, `!=` and each value of `in`; normalises an owner id literal so
/// that it compares with the hyphenated form.
fn validate_equality(
    operand: &Operand,
    literal: &mut Literal,
    offset: usize,
) -> Result<(), ExprError> {
    if let (Kind::OwnerId, Literal::Text(text)) = (operand.kind(), &*literal) {
        let id = Uuid::parse_str(text).map_err(|_| {
            ExprError::new(
                offset,
                format!("{literal} is not a valid owner id (a UUID)"),
            )
        })?;
        *literal = Literal::Text(id.hyphenated().to_string());
        return Ok(());
    }
    let literal = &*literal;
    let spelling = &operand.spelling;
    let mismatch = |wanted: &str| {
        Err(ExprError::new(
            offset,
            format!(
                "`{spelling}` is compared with {wanted}, not {}",
                literal.kind_name()
            ),
        ))
    };
    match (operand.kind(), literal) {
        (Kind::Choice, Literal::Text(text)) => match operand.field.choice(text) {
            Some((false, expected)) => Err(ExprError::new(
                offset,
                format!(
                    "{literal} is not a valid {} (expected one of {expected})",
                    operand.field.canonical()
                ),
            )),
            _ => Ok(()),
        },
        (Kind::Text, Literal::Text(_)) => Ok(()),
        (Kind::Choice | Kind::Text, _) => mismatch("a string"),
        (Kind::OwnerId, _) => mismatch("a UUID string"),
        (Kind::TagList, _) => Err(ExprError::new(
            offset,
            "`tags` is a list: test it with `tags contains \"name\"`",
        )),
        (Kind::Flag, Literal::Flag(_)) => Ok(()),
        (Kind::Flag, _) => mismatch("true or false"),
        (Kind::Days, Literal::Number(_)) => Ok(()),
        (Kind::Days, _) => mismatch("a number of days"),
        (Kind::Attribute, _) => Ok(()),
    }
}

fn validate_is(operand: &Operand, what: IsWhat, offset: usize) -> Result<(), ExprError> {
    match (operand.kind(), what) {
        (Kind::Days, _) => Err(ExprError::new(
            offset,
            format!(
                "`{}` is a number of days; test the date itself with `{} is {}`",
                operand.spelling,
                operand.field.canonical(),
                what.word()
            ),
        )),
        (_, IsWhat::Set | IsWhat::Missing) | (Kind::Flag | Kind::Attribute, _) => Ok(()),
        _ => Err(ExprError::new(
            offset,
            format!(
                "`is {}` needs a boolean operand (owner.* or attributes.<key>), not `{}`",
                what.word(),
                operand.spelling
            ),
        )),
    }
}

fn validate_contains(operand: &Operand, literal: &Literal, offset: usize) -> Result<(), ExprError> {
    match (operand.kind(), literal) {
        (Kind::TagList | Kind::Attribute, Literal::Text(_)) => Ok(()),
        (Kind::Attribute, Literal::Number(port)) => {
            if port.fract() == 0.0 && (0.0..=65535.0).contains(port) {
                Ok(())
            } else {
                Err(ExprError::new(
                    offset,
                    format!(
                        "`contains` with a number looks for a port: {literal} is not 0 to 65535"
                    ),
                ))
            }
        }
        (Kind::TagList, _) => Err(ExprError::new(
            offset,
            "`tags contains` needs a tag name string",
        )),
        (Kind::Attribute, _) => Err(ExprError::new(
            offset,
            "`contains` needs a string (a list entry) or a number (a port)",
        )),
        _ => Err(ExprError::new(
            offset,
            format!(
                "`contains` needs a list operand (tags or attributes.<key>), not `{}`",
                operand.spelling
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{AssetSnapshot, OwnerSnapshot};
    use serde_json::json;
    use time::macros::datetime;
    use time::OffsetDateTime;

    fn now() -> OffsetDateTime {
        datetime!(2026-06-01 12:00 UTC)
    }

    fn host(attributes: Value) -> AssetSnapshot {
        AssetSnapshot {
            id: Uuid::nil(),
            short_code: "HST-0001".into(),
            name: "web-1".into(),
            asset_type: AssetType::Host,
            lifecycle_state: LifecycleState::Active,
            environment: Environment::Prod,
            location: Some("dc1".into()),
            owner_id: None,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
            tags: vec!["pci".into(), "web".into()],
        }
    }

    fn subject<'a>(asset: &'a AssetSnapshot, owner: Option<&'a OwnerSnapshot>) -> Subject<'a> {
        Subject {
            asset,
            owner,
            now: now(),
        }
    }

    /// A one-rule file; the expressions go in TOML literal strings.
    fn rule_text(applies_when: Option<&str>, passes_when: &str) -> String {
        let mut text = String::from(
            "[[rule]]\nid = \"test-rule\"\ntitle = \"Test\"\nframework = \"Internal\"\n\
             control = \"T-1\"\nseverity = \"medium\"\ndescription = \"d\"\nremediation = \"r\"\n",
        );
        if let Some(applies_when) = applies_when {
            text.push_str(&format!("applies_when = '{applies_when}'\n"));
        }
        text.push_str(&format!("passes_when = '{passes_when}'\n"));
        text
    }

    fn rule(applies_when: Option<&str>, passes_when: &str) -> DeclarativeRule {
        let mut rules = parse_file("test.toml", &rule_text(applies_when, passes_when))
            .expect("the rule parses");
        rules.remove(0)
    }

    fn status(passes_when: &str, asset: &AssetSnapshot) -> ResultStatus {
        rule(None, passes_when)
            .evaluate(&subject(asset, None))
            .status
    }

    fn error(text: &str) -> RuleFileError {
        parse_file("bad.toml", text).expect_err("the file is rejected")
    }

    /// The expression error of a one-rule file whose passes_when (line 9)
    /// is `passes_when`.
    fn passes_when_error(passes_when: &str) -> RuleFileError {
        let failure = error(&rule_text(None, passes_when));
        assert_eq!(failure.line, 9, "{failure}");
        failure
    }

    const VALID: &str = r#"# Baseline controls.
[[rule]]
id = "prod-hosts-firewall"
title = "Production hosts run a firewall"
framework = "NIST SP 800-53"
control = "SC-7"
severity = "high"
description = "Hosts in production filter inbound traffic."
remediation = "Enable the host firewall."
family = "network"
applies_when = 'type == "host" and environment == "prod"'
passes_when = 'attributes.firewall_enabled is true'

[[rule]]
id = "owner-mfa"
title = "Asset owners use MFA"
framework = "CIS Controls v8"
control = "6.5"
severity = "critical"
description = "Whoever owns an asset signs in with a second factor."
remediation = "Enrol the owner in MFA."
passes_when = 'owner.mfa_enabled is true and owner.active is true'

[[rule]]
id = "pci-no-telnet"
title = "PCI assets expose no telnet"
framework = "PCI DSS 4.0"
control = "2.2.4"
severity = "low"
description = "Telnet sends credentials in clear text."
remediation = "Close port 23."
applies_when = 'tags contains "pci"'
passes_when = 'not (attributes.open_ports contains 23)'
"#;

    fn valid_rules() -> Vec<DeclarativeRule> {
        parse_file("rules/valid.toml", VALID).expect("the valid file parses")
    }

    #[test]
    fn a_valid_file_gives_every_rule_with_its_info() {
        let rules = valid_rules();
        let ids: Vec<&str> = rules.iter().map(|rule| rule.info().id.as_str()).collect();
        assert_eq!(ids, ["prod-hosts-firewall", "owner-mfa", "pci-no-telnet"]);

        let firewall = rules[0].info();
        assert_eq!(firewall.title, "Production hosts run a firewall");
        assert_eq!(firewall.framework, "NIST SP 800-53");
        assert_eq!(firewall.control, "SC-7");
        assert_eq!(firewall.severity, Severity::High);
        assert_eq!(firewall.family, "network");
        assert_eq!(firewall.source, "rules/valid.toml");
        assert_eq!(
            firewall.definition,
            r#"applies_when: (type == "host") and (environment == "prod"); passes_when: attributes.firewall_enabled is true"#
        );
        assert_eq!(rules[1].info().family, "custom");
        assert_eq!(rules[1].info().severity, Severity::Critical);
        assert_eq!(
            rules[1].info().definition,
            "passes_when: (owner.mfa_enabled is true) and (owner.active is true)"
        );
        assert_eq!(
            rules[2].info().definition,
            r#"applies_when: tags contains "pci"; passes_when: not (attributes.open_ports contains 23)"#
        );
    }

    #[test]
    fn rules_pass_fail_or_do_not_apply() {
        let rules = valid_rules();
        let (firewall, owner_mfa, no_telnet) = (&rules[0], &rules[1], &rules[2]);
        let verdict =
            |rule: &DeclarativeRule, asset: &AssetSnapshot, owner: Option<&OwnerSnapshot>| {
                let outcome = rule.evaluate(&subject(asset, owner));
                (outcome.status, outcome.evidence["reason"].clone())
            };
        use ResultStatus::{Fail, NotApplicable, Pass};

        assert_eq!(
            verdict(firewall, &host(json!({"firewall_enabled": true})), None).0,
            Pass
        );
        assert_eq!(
            verdict(
                firewall,
                &host(json!({"firewall_enabled": "enabled"})),
                None
            )
            .0,
            Pass
        );
        assert_eq!(
            verdict(firewall, &host(json!({"firewall_enabled": false})), None),
            (Fail, json!("passes_when does not hold"))
        );
        assert_eq!(
            verdict(firewall, &host(json!({})), None),
            (
                NotApplicable,
                json!("attributes.firewall_enabled is missing or not a boolean")
            )
        );
        assert_eq!(
            verdict(firewall, &host(json!({"firewall_enabled": "maybe"})), None),
            (
                NotApplicable,
                json!("attributes.firewall_enabled is missing or not a boolean")
            )
        );
        let mut dev = host(json!({"firewall_enabled": false}));
        dev.environment = Environment::Dev;
        assert_eq!(
            verdict(firewall, &dev, None),
            (NotApplicable, json!("applies_when does not hold"))
        );

        assert_eq!(
            verdict(owner_mfa, &host(json!({})), None),
            (
                NotApplicable,
                json!("owner.mfa_enabled is unknown: the asset has no owner")
            )
        );
        let careful = OwnerSnapshot {
            mfa_enabled: true,
            active: true,
        };
        let careless = OwnerSnapshot {
            mfa_enabled: false,
            active: true,
        };
        assert_eq!(verdict(owner_mfa, &host(json!({})), Some(&careful)).0, Pass);
        assert_eq!(
            verdict(owner_mfa, &host(json!({})), Some(&careless)).0,
            Fail
        );

        assert_eq!(
            verdict(no_telnet, &host(json!({"open_ports": [22, 23]})), None).0,
            Fail
        );
        assert_eq!(
            verdict(no_telnet, &host(json!({"open_ports": "22, 443"})), None).0,
            Pass
        );
        assert_eq!(
            verdict(no_telnet, &host(json!({"open_ports": "lots"})), None),
            (
                NotApplicable,
                json!("attributes.open_ports is missing or not a port list")
            )
        );
        let mut untagged = host(json!({"open_ports": [23]}));
        untagged.tags.clear();
        assert_eq!(verdict(no_telnet, &untagged, None).0, NotApplicable);
    }

    #[test]
    fn an_undecidable_applies_when_makes_the_rule_not_applicable() {
        let rule = rule(
            Some("attributes.internet_facing is true"),
            "attributes.waf is true",
        );
        let outcome = rule.evaluate(&subject(&host(json!({"waf": false})), None));
        assert_eq!(outcome.status, ResultStatus::NotApplicable);
        assert_eq!(
            outcome.evidence["reason"],
            "applies_when cannot be decided: attributes.internet_facing is missing or not a boolean"
        );
    }

    #[test]
    fn and_or_not_are_three_valued() {
        use ResultStatus::{Fail, NotApplicable, Pass};
        let asset = host(json!({"yes": true, "no": false}));
        let cases = [
            ("attributes.gone is true and attributes.no is true", Fail),
            ("attributes.no is true and attributes.gone is true", Fail),
            (
                "attributes.gone is true and attributes.yes is true",
                NotApplicable,
            ),
            ("attributes.yes is true and attributes.yes is true", Pass),
            ("attributes.gone is true or attributes.yes is true", Pass),
            ("attributes.yes is true or attributes.gone is true", Pass),
            (
                "attributes.gone is true or attributes.no is true",
                NotApplicable,
            ),
            ("attributes.no is true or attributes.no is true", Fail),
            ("not attributes.gone is true", NotApplicable),
            ("not attributes.no is true", Pass),
            ("not attributes.yes is true", Fail),
            ("attributes.gone is missing", Pass),
            ("attributes.gone is set", Fail),
            ("not attributes.gone is set", Pass),
            ("attributes.yes is set and attributes.no is false", Pass),
            // The documented way to make a missing attribute fail.
            ("attributes.gone is set and attributes.gone is true", Fail),
        ];
        for (expression, expected) in cases {
            assert_eq!(status(expression, &asset), expected, "{expression}");
        }
    }

    #[test]
    fn not_binds_tightest_then_and_then_or() {
        use ResultStatus::{Fail, Pass};
        let asset = host(json!({"yes": true, "no": false}));
        // `or` looser than `and`: yes or (no and no) holds; (yes or no) and no would not.
        let mixed = "attributes.yes is true or attributes.no is true and attributes.no is true";
        assert_eq!(status(mixed, &asset), Pass);
        assert_eq!(
            rule(None, mixed).info().definition,
            "passes_when: (attributes.yes is true) or ((attributes.no is true) and (attributes.no is true))"
        );
        let grouped = "(attributes.yes is true or attributes.no is true) and attributes.no is true";
        assert_eq!(status(grouped, &asset), Fail);
        // `not` tighter than `and`: (not no) and no fails; not (no and no) would hold.
        let negated = "not attributes.no is true and attributes.no is true";
        assert_eq!(status(negated, &asset), Fail);
        assert_eq!(
            rule(None, negated).info().definition,
            "passes_when: (not (attributes.no is true)) and (attributes.no is true)"
        );
        assert_eq!(
            status(
                "not (attributes.no is true and attributes.no is true)",
                &asset
            ),
            Pass
        );
    }

    #[test]
    fn in_and_contains_read_fields_lists_and_ports() {
        use ResultStatus::{Fail, NotApplicable, Pass};
        let asset = |attributes: Value| host(attributes);
        let plain = asset(json!({}));
        assert_eq!(
            status(r#"environment in ["prod", "staging"]"#, &plain),
            Pass
        );
        assert_eq!(
            status(r#"lifecycle_state in ["retired", "disposed"]"#, &plain),
            Fail
        );
        assert_eq!(status(r#"tags contains "pci""#, &plain), Pass);
        assert_eq!(status(r#"tags contains "sox""#, &plain), Fail);
        assert_eq!(
            status(r#"name == "web-1" and location != "dc2""#, &plain),
            Pass
        );

        let rdp = r#"attributes.open_ports contains 3389"#;
        assert_eq!(
            status(rdp, &asset(json!({"open_ports": [22, "3389"]}))),
            Pass
        );
        assert_eq!(status(rdp, &asset(json!({"open_ports": "22, 443"}))), Fail);
        assert_eq!(
            status(rdp, &asset(json!({"open_ports": "none"}))),
            NotApplicable
        );
        assert_eq!(status(rdp, &plain), NotApplicable);

        let admin = r#"attributes.roles contains "admin""#;
        assert_eq!(
            status(admin, &asset(json!({"roles": ["admin", "dev"]}))),
            Pass
        );
        assert_eq!(status(admin, &asset(json!({"roles": ["dev"]}))), Fail);
        assert_eq!(
            status(admin, &asset(json!({"roles": "admin"}))),
            NotApplicable
        );

        let tier = "attributes.tier in [1, 2]";
        assert_eq!(status(tier, &asset(json!({"tier": "2"}))), Pass);
        assert_eq!(status(tier, &asset(json!({"tier": 3}))), Fail);
        assert_eq!(status(tier, &asset(json!({"tier": "gold"}))), NotApplicable);

        let linux = r#"attributes.os == "linux""#;
        assert_eq!(status(linux, &asset(json!({"os": "linux"}))), Pass);
        assert_eq!(status(linux, &asset(json!({"os": "windows"}))), Fail);
        assert_eq!(status(linux, &asset(json!({"os": 5}))), NotApplicable);
        assert_eq!(
            status(
                "attributes.encrypted == true",
                &asset(json!({"encrypted": "yes"}))
            ),
            Pass
        );
        assert_eq!(
            status("attributes.cpus >= 4", &asset(json!({"cpus": "8"}))),
            Pass
        );
        assert_eq!(
            status("attributes.cpus >= 4", &asset(json!({"cpus": "many"}))),
            NotApplicable
        );
    }

    #[test]
    fn owner_id_compares_as_a_uuid() {
        let owner = Uuid::from_u128(0x1234);
        let mut asset = host(json!({}));
        asset.owner_id = Some(owner);
        let braced = format!(
            "owner_id == \"{{{}}}\"",
            owner.hyphenated().to_string().to_uppercase()
        );
        assert_eq!(status(&braced, &asset), ResultStatus::Pass);
        assert_eq!(status("owner_id is set", &asset), ResultStatus::Pass);
        asset.owner_id = None;
        assert_eq!(status(&braced, &asset), ResultStatus::NotApplicable);
        assert_eq!(status("owner_id is missing", &asset), ResultStatus::Pass);
    }

    #[test]
    fn age_days_and_days_until_hold_at_their_boundaries() {
        use ResultStatus::{Fail, NotApplicable, Pass};
        let patched = |at: &str| host(json!({ "last_patched": at }));
        let within = "age_days(attributes.last_patched) <= 30";
        let under = "age_days(attributes.last_patched) < 30";
        // Exactly 30 days before 2026-06-01 12:00 UTC.
        assert_eq!(status(within, &patched("2026-05-02T12:00:00Z")), Pass);
        assert_eq!(status(under, &patched("2026-05-02T12:00:00Z")), Fail);
        assert_eq!(status(within, &patched("2026-05-02T11:59:59Z")), Fail);
        assert_eq!(status(under, &patched("2026-05-02T12:00:01Z")), Pass);
        assert_eq!(status(within, &patched("last tuesday")), NotApplicable);

        let expires = |at: Value| host(json!({ "cert_expires": at }));
        let lasting = "days_until(attributes.cert_expires) >= 14";
        assert_eq!(
            status(lasting, &expires(json!("2026-06-15T12:00:00Z"))),
            Pass
        );
        assert_eq!(
            status(lasting, &expires(json!("2026-06-15T11:59:59Z"))),
            Fail
        );
        // The same boundary as epoch seconds.
        let boundary = datetime!(2026-06-15 12:00 UTC).unix_timestamp();
        assert_eq!(status(lasting, &expires(json!(boundary))), Pass);
        assert_eq!(status(lasting, &expires(json!(boundary - 1))), Fail);
        let outcome = rule(None, lasting).evaluate(&subject(&host(json!({})), None));
        assert_eq!(outcome.status, NotApplicable);
        assert_eq!(
            outcome.evidence["reason"],
            "attributes.cert_expires is missing or not a date"
        );
    }

    #[test]
    fn evidence_names_what_was_read_and_is_deterministic() {
        let firewall = &valid_rules()[0];
        let asset = host(json!({"firewall_enabled": "yes", "unrelated": 1}));
        let outcome = firewall.evaluate(&subject(&asset, None));
        assert_eq!(outcome.status, ResultStatus::Pass);
        assert_eq!(
            outcome.evidence,
            json!({
                "attribute": "firewall_enabled",
                "observed": {"attributes.firewall_enabled": "yes"},
                "expected": "attributes.firewall_enabled is true",
                "reason": "passes_when holds",
            })
        );
        let missing = firewall.evaluate(&subject(&host(json!({})), None));
        assert_eq!(
            missing.evidence["observed"],
            json!({"attributes.firewall_enabled": null})
        );

        let rule = rule(
            None,
            r#"asset_type == "host" and age_days(attributes.last_patched) <= 30 and attributes.agent is true"#,
        );
        let asset = host(json!({"last_patched": "2026-05-31T12:00:00Z", "agent": "on"}));
        let first = rule.evaluate(&subject(&asset, None));
        assert_eq!(first.evidence["attribute"], "last_patched");
        assert_eq!(
            first.evidence["observed"],
            json!({
                "age_days(attributes.last_patched)": 1.0,
                // The canonical name, whichever alias the file used.
                "type": "host",
                "attributes.agent": "on",
                "attributes.last_patched": "2026-05-31T12:00:00Z",
            })
        );
        let again = rule.evaluate(&subject(&asset, None));
        assert_eq!(
            serde_json::to_string(&first.evidence).expect("serialises"),
            serde_json::to_string(&again.evidence).expect("serialises")
        );
    }

    #[test]
    fn the_digest_follows_thresholds_not_whitespace() {
        let base = rule(
            Some(r#"type == "host""#),
            "age_days(attributes.last_patched) <= 30",
        );
        let spaced = rule(
            Some(r#"  ( asset_type==  "host" )  "#),
            "age_days( attributes.last_patched )<=30.0",
        );
        let changed = rule(
            Some(r#"type == "host""#),
            "age_days(attributes.last_patched) <= 45",
        );
        assert_eq!(base.info().definition, spaced.info().definition);
        assert_eq!(base.info().digest(), spaced.info().digest());
        assert_ne!(base.info().digest(), changed.info().digest());
        // Same rule, same evidence: a reformatted file must not make
        // `verify` report differences.
        let asset = host(json!({"last_patched": "2026-05-31T12:00:00Z"}));
        assert_eq!(
            base.evaluate(&subject(&asset, None)).evidence,
            spaced.evaluate(&subject(&asset, None)).evidence
        );

        let mut multi_line = rule_text(None, "x");
        multi_line = multi_line.replace(
            "passes_when = 'x'",
            "passes_when = '''\n  age_days(attributes.last_patched)\n    <= 30\n'''",
        );
        let reflowed = parse_file("test.toml", &multi_line).expect("parses");
        assert_eq!(
            reflowed[0].info().definition,
            "passes_when: age_days(attributes.last_patched) <= 30"
        );
    }

    #[test]
    fn a_toml_syntax_error_names_its_line() {
        let failure = error("[[rule]]\nid = \"x\"\ntitle = \"unterminated\nframework = \"f\"\n");
        assert_eq!(
            (failure.file.as_str(), failure.line),
            ("bad.toml", 3),
            "{failure}"
        );
        assert!(failure.to_string().starts_with("bad.toml:3: "), "{failure}");
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let text = rule_text(None, "attributes.a is true")
            .replace("remediation", "colour = \"red\"\nremediation");
        let failure = error(&text);
        assert_eq!(failure.line, 8, "{failure}");
        assert!(failure.reason.contains("colour"), "{failure}");
        let top_level = error(&format!(
            "version = 2\n{}",
            rule_text(None, "attributes.a is true")
        ));
        assert_eq!(top_level.line, 1, "{top_level}");
        assert!(top_level.reason.contains("version"), "{top_level}");
    }

    #[test]
    fn a_missing_key_names_the_line_of_its_rule_table() {
        let second = rule_text(None, "attributes.a is true")
            .replace("test-rule", "second-rule")
            .replace("passes_when = 'attributes.a is true'\n", "");
        let text = format!(
            "{}\n# second\n{second}",
            rule_text(None, "attributes.a is true")
        );
        let failure = error(&text);
        assert_eq!(failure.line, 12, "{failure}");
        assert_eq!(
            failure.reason,
            "rule \"second-rule\" is missing the required key `passes_when`"
        );
        let anonymous = error("\n[[rule]]\ntitle = \"t\"\n");
        assert_eq!(anonymous.line, 2, "{anonymous}");
        assert_eq!(
            anonymous.reason,
            "[[rule]] is missing the required key `id`"
        );
    }

    #[test]
    fn a_bad_severity_id_or_title_names_its_line() {
        let failure =
            error(&rule_text(None, "attributes.a is true").replace("\"medium\"", "\"urgent\""));
        assert_eq!(failure.line, 6, "{failure}");
        assert!(failure.reason.contains("\"urgent\""), "{failure}");
        let failure =
            error(&rule_text(None, "attributes.a is true").replace("test-rule", "Test_Rule"));
        assert_eq!(failure.line, 2, "{failure}");
        assert!(failure.reason.contains("invalid rule id"), "{failure}");
        let failure = error(&rule_text(None, "attributes.a is true").replace("\"Test\"", "\"  \""));
        assert_eq!(failure.line, 3, "{failure}");
        let too_long = "a".repeat(65);
        let failure =
            error(&rule_text(None, "attributes.a is true").replace("test-rule", &too_long));
        assert_eq!(failure.line, 2, "{failure}");
        assert!(parse_file(
            "ok.toml",
            &rule_text(None, "attributes.a is true").replace("test-rule", &too_long[..64])
        )
        .is_ok());
    }

    #[test]
    fn an_unknown_operand_names_its_line_and_column() {
        let failure = passes_when_error(r#"colour == "red""#);
        assert!(
            failure
                .reason
                .starts_with("passes_when: unknown operand `colour`"),
            "{failure}"
        );
        assert!(failure.reason.ends_with("at column 1"), "{failure}");
        let failure = passes_when_error(r#"attributes.a is true and owner.name == "x""#);
        assert!(failure.reason.contains("`owner.name`"), "{failure}");
        assert!(failure.reason.ends_with("at column 26"), "{failure}");
        let failure = passes_when_error("attributes.bad-key is true");
        assert!(
            failure.reason.contains("unexpected character `-`"),
            "{failure}"
        );
    }

    #[test]
    fn an_invalid_enum_literal_names_its_line_and_column() {
        let text = rule_text(
            Some(r#"type == "host" and environment == "production""#),
            "attributes.a is true",
        );
        let failure = error(&text);
        assert_eq!(failure.line, 9, "{failure}");
        assert!(
            failure.reason.starts_with(
                "applies_when: \"production\" is not a valid environment (expected one of prod, staging, dev)"
            ),
            "{failure}"
        );
        assert!(failure.reason.ends_with("at column 35"), "{failure}");
        let failure = passes_when_error(r#"type in ["host", "vm"]"#);
        assert!(
            failure.reason.contains("\"vm\" is not a valid type"),
            "{failure}"
        );
        let failure = passes_when_error("lifecycle_state == 3");
        assert!(
            failure.reason.contains("compared with a string"),
            "{failure}"
        );
    }

    #[test]
    fn unbalanced_parentheses_name_their_line_and_column() {
        let failure = passes_when_error("(attributes.a is true and attributes.b is true");
        assert_eq!(
            failure.reason,
            "passes_when: unbalanced `(`: no `)` closes it at column 1"
        );
        let failure = passes_when_error("attributes.a is true)");
        assert_eq!(
            failure.reason,
            "passes_when: unbalanced `)`: no `(` to close at column 21"
        );
    }

    #[test]
    fn an_ordering_against_a_string_names_its_line_and_column() {
        let failure = passes_when_error(r#"attributes.version < "2.0""#);
        assert_eq!(
            failure.reason,
            r#"passes_when: `<` compares numbers, but "2.0" is a string at column 22"#
        );
        let failure = passes_when_error("name >= 3");
        assert!(
            failure.reason.contains("`name` is not a number"),
            "{failure}"
        );
    }

    #[test]
    fn malformed_expressions_are_rejected_with_a_reason() {
        let cases = [
            ("", "passes_when: empty expression at column 1"),
            ("   ", "passes_when: empty expression at column 1"),
            (
                "attributes.a is true attributes.b is true",
                "passes_when: unexpected `attributes.b` after a complete expression (missing `and` or `or`?) at column 22",
            ),
            ("attributes.a is maybe", "passes_when: expected true, false, set or missing after `is`, found `maybe` at column 17"),
            ("attributes.a = 1", "passes_when: `=` is not an operator; use `==` at column 14"),
            ("attributes.a in []", "passes_when: `in` needs at least one value at column 18"),
            (r#"attributes.a in [1, "x"]"#, "passes_when: every value in the list must be of one kind: a string after a number at column 21"),
            (r#"attributes.a == "open"#, "passes_when: unterminated string at column 17"),
            ("attributes.ports contains 70000", "passes_when: `contains` with a number looks for a port: 70000 is not 0 to 65535 at column 27"),
            (r#"name contains "w""#, "passes_when: `contains` needs a list operand (tags or attributes.<key>), not `name` at column 15"),
            ("age_days(name) < 3", "passes_when: age_days(...) reads a date attribute: use age_days(attributes.<key>) at column 10"),
            ("type is true", "passes_when: `is true` needs a boolean operand (owner.* or attributes.<key>), not `type` at column 9"),
            ("owner.active == 1", "passes_when: `owner.active` is compared with true or false, not a number at column 17"),
            ("attributes.a and", "passes_when: expected a comparison (==, !=, <, <=, >, >=, is, in, contains) after `attributes.a`, found `and` at column 14"),
            ("attributes.a ==", "passes_when: unexpected end of expression: expected a literal (a \"string\", a number, true or false) at column 16"),
        ];
        for (expression, reason) in cases {
            let failure = passes_when_error(expression);
            assert_eq!(failure.reason, reason, "{expression}");
        }
        let multi_line = rule_text(None, "x").replace(
            "passes_when = 'x'",
            "passes_when = '''\nattributes.a is true and\n  colour is true'''",
        );
        let failure = error(&multi_line);
        assert_eq!(failure.line, 9, "{failure}");
        assert!(
            failure
                .reason
                .ends_with("at line 2, column 3 of the expression"),
            "{failure}"
        );
    }

    #[test]
    fn a_file_without_rules_is_rejected() {
        assert_eq!(error("").line, 1);
        assert_eq!(error("# nothing here\n").line, 1);
        let empty = error("\nrule = []\n");
        assert_eq!(empty.line, 2, "{empty}");
        assert!(empty.reason.contains("no rule"), "{empty}");
    }

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            let path = std::env::temp_dir().join(format!("sentryops-rules-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("creates the temporary directory");
            Self(path)
        }

        fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
            std::fs::write(self.0.join(name), contents).expect("writes the file");
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_dir_reads_toml_files_in_name_order_and_ignores_others() {
        let dir = TempDir::new();
        dir.write(
            "b.toml",
            rule_text(None, "attributes.b is true").replace("test-rule", "rule-b"),
        );
        dir.write(
            "a.toml",
            rule_text(None, "attributes.a is true").replace("test-rule", "rule-a"),
        );
        dir.write("README.md", "not a rule file = [");
        let rules = load_dir(&dir.0).expect("the directory loads");
        let ids: Vec<&str> = rules.iter().map(|rule| rule.info().id.as_str()).collect();
        assert_eq!(ids, ["rule-a", "rule-b"]);
        assert_eq!(
            rules[0].info().source,
            dir.0.join("a.toml").display().to_string()
        );
    }

    #[test]
    fn a_duplicate_id_names_both_places() {
        let dir = TempDir::new();
        dir.write("a.toml", rule_text(None, "attributes.a is true"));
        dir.write(
            "b.toml",
            format!("# again\n{}", rule_text(None, "attributes.b is true")),
        );
        let failure = load_dir(&dir.0).expect_err("the duplicate is rejected");
        let first = dir.0.join("a.toml").display().to_string();
        assert_eq!(failure.file, dir.0.join("b.toml").display().to_string());
        assert_eq!(failure.line, 3);
        assert_eq!(
            failure.reason,
            format!("duplicate rule id \"test-rule\": already defined at {first}:2")
        );

        let twice = format!(
            "{}\n{}",
            rule_text(None, "attributes.a is true"),
            rule_text(None, "attributes.b is true")
        );
        let failure = error(&twice);
        assert_eq!(failure.line, 12, "{failure}");
        assert_eq!(
            failure.reason,
            "duplicate rule id \"test-rule\": already defined at bad.toml:2"
        );
    }

    #[test]
    fn load_dir_rejects_a_missing_directory_and_invalid_utf8() {
        let dir = TempDir::new();
        let missing = dir.0.join("absent");
        let failure = load_dir(&missing).expect_err("a missing directory is an error");
        assert_eq!(failure.line, 0);
        assert!(
            failure
                .reason
                .starts_with("cannot read the rules directory"),
            "{failure}"
        );

        let mut bytes = b"[[rule]]\nid = \"x\"\ntitle = \"".to_vec();
        bytes.extend([0xff, b'"', b'\n']);
        dir.write("bad.toml", bytes);
        let failure = load_dir(&dir.0).expect_err("invalid UTF-8 is an error");
        assert_eq!(
            (failure.line, failure.reason.as_str()),
            (3, "the file is not valid UTF-8")
        );
    }

    #[test]
    fn the_repository_rules_directory_loads() {
        let rules = load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")))
            .expect("the shipped rules load");
        assert!(rules
            .iter()
            .any(|rule| rule.info().id == "prod-hosts-firewall"));
    }
}
