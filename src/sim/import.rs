//! The CSV import of seed 000 Phase A step 2 (`TenantDataImportService.importFromCSV`):
//! validation first (header, required fields, e-mails, duplicates within the file and
//! against the database, the pilot row limit) with a report and no write, then one
//! transaction per file with upsert semantics, so a re-run updates instead of duplicating.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use serde_json::{Value, json};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection as _};

use super::Error;
use super::tenant::{audit, ident, table_exists};

/// The entities of the seed's import service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Students,
    Teachers,
    Classes,
    Subjects,
}

impl FromStr for Entity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Entity, Error> {
        Ok(match s {
            "students" => Entity::Students,
            "teachers" => Entity::Teachers,
            "classes" => Entity::Classes,
            "subjects" => Entity::Subjects,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown entity `{s}`: students, teachers, classes or subjects"
                )));
            }
        })
    }
}

impl Entity {
    pub fn name(self) -> &'static str {
        match self {
            Entity::Students => "students",
            Entity::Teachers => "teachers",
            Entity::Classes => "classes",
            Entity::Subjects => "subjects",
        }
    }

    /// The CSV header, which is also the table's columns; the first is the upsert key.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Entity::Students => &[
                "student_id",
                "first_name",
                "last_name",
                "email",
                "class_code",
            ],
            Entity::Teachers => &[
                "teacher_id",
                "first_name",
                "last_name",
                "email",
                "subject_code",
            ],
            Entity::Classes => &["class_code", "name", "grade"],
            Entity::Subjects => &["subject_code", "name"],
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Entity::Students | Entity::Teachers => &self.columns()[..3],
            Entity::Classes | Entity::Subjects => &self.columns()[..2],
        }
    }

    fn key(self) -> &'static str {
        self.columns()[0]
    }

    fn has_email(self) -> bool {
        matches!(self, Entity::Students | Entity::Teachers)
    }
}

/// Parses CSV: comma-separated, fields optionally in double quotes (`""` is a quote inside
/// them), blank lines skipped. Returns the rows, header first.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                ('"', true) => quoted = false,
                ('"', false) if field.is_empty() => quoted = true,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        if quoted {
            return Err(format!("line {}: unterminated quoted field", n + 1));
        }
        fields.push(field.trim().to_owned());
        for f in &mut fields {
            *f = f.trim().to_owned();
        }
        rows.push(fields);
    }
    Ok(rows)
}

/// The import's validation report (the seed's `validationReport`).
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: usize,
    pub errors: Vec<String>,
    pub duplicates_in_csv: usize,
    pub existing_in_db: usize,
    /// The rows as maps from column to value, when the file parsed.
    records: Vec<HashMap<&'static str, String>>,
}

impl Report {
    pub fn can_proceed(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn json(&self) -> Value {
        json!({
            "rows": self.rows,
            "errors": self.errors,
            "duplicatesInCsv": self.duplicates_in_csv,
            "existingInDb": self.existing_in_db,
            "canProceed": self.can_proceed(),
        })
    }
}

/// Validates a CSV before any write: the header, required fields, e-mails, duplicates within
/// the file and against the database (an existing key is an update; an e-mail held by
/// another record is an error), and the pilot row limit (`max_rows`).
pub async fn validate(
    conn: &mut PgConnection,
    schema: &str,
    entity: Entity,
    text: &str,
    max_rows: Option<u64>,
) -> Result<Report, Error> {
    let mut report = Report {
        rows: 0,
        errors: Vec::new(),
        duplicates_in_csv: 0,
        existing_in_db: 0,
        records: Vec::new(),
    };
    let rows = match parse_csv(text) {
        Ok(rows) => rows,
        Err(e) => {
            report.errors.push(e);
            return Ok(report);
        }
    };
    let Some((header, body)) = rows.split_first() else {
        report.errors.push("the file is empty (no header)".into());
        return Ok(report);
    };
    report.rows = body.len();
    let expected: HashSet<&str> = entity.columns().iter().copied().collect();
    let given: HashSet<&str> = header.iter().map(String::as_str).collect();
    if expected != given || header.len() != given.len() {
        report.errors.push(format!(
            "header must be {} (got {})",
            entity.columns().join(","),
            header.join(",")
        ));
        return Ok(report);
    }
    if let Some(max) = max_rows
        && report.rows as u64 > max
    {
        report.errors.push(format!(
            "413: {} rows exceed PILOT_MAX_IMPORT_ROWS={max} (pilot mode)",
            report.rows
        ));
    }
    let mut keys = HashSet::new();
    let mut emails = HashSet::new();
    for (i, row) in body.iter().enumerate() {
        let line = i + 2;
        if row.len() != header.len() {
            report.errors.push(format!(
                "line {line}: {} fields, the header has {}",
                row.len(),
                header.len()
            ));
            continue;
        }
        let mut record = HashMap::new();
        for (column, value) in header.iter().zip(row) {
            let column = entity
                .columns()
                .iter()
                .copied()
                .find(|c| c == column)
                .expect("the header was checked");
            record.insert(column, value.clone());
        }
        for column in entity.required() {
            if record[column].is_empty() {
                report
                    .errors
                    .push(format!("line {line}: {column} is empty"));
            }
        }
        if !keys.insert(record[entity.key()].clone()) {
            report.duplicates_in_csv += 1;
            report.errors.push(format!(
                "line {line}: duplicate {} `{}` in the file",
                entity.key(),
                record[entity.key()]
            ));
        }
        if entity.has_email() {
            let email = &record["email"];
            if !email.is_empty() {
                if !email.contains('@') {
                    report
                        .errors
                        .push(format!("line {line}: `{email}` is not an e-mail"));
                } else if !emails.insert(email.to_lowercase()) {
                    report.duplicates_in_csv += 1;
                    report.errors.push(format!(
                        "line {line}: duplicate email `{email}` in the file"
                    ));
                }
            }
        }
        if entity == Entity::Classes
            && !record["grade"].is_empty()
            && record["grade"].parse::<i32>().is_err()
        {
            report.errors.push(format!(
                "line {line}: grade `{}` is not a number",
                record["grade"]
            ));
        }
        report.records.push(record);
    }
    if !table_exists(conn, schema, entity.name()).await? {
        report.errors.push(format!(
            "table {schema}.{} does not exist: provision the tenant first",
            entity.name()
        ));
        return Ok(report);
    }
    let key_list: Vec<String> = report
        .records
        .iter()
        .map(|r| r[entity.key()].clone())
        .collect();
    report.existing_in_db = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
        "select count(*) from {} where {} = any($1)",
        ident(schema, entity.name()),
        entity.key()
    )))
    .bind(&key_list)
    .fetch_one(&mut *conn)
    .await? as usize;
    if entity.has_email() {
        let pairs: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "select lower(email), {} from {} where email is not null",
            entity.key(),
            ident(schema, entity.name())
        )))
        .fetch_all(&mut *conn)
        .await?;
        let owner: HashMap<String, String> = pairs.into_iter().collect();
        for record in &report.records {
            let email = record["email"].to_lowercase();
            if let Some(key) = owner.get(&email)
                && *key != record[entity.key()]
            {
                report.errors.push(format!(
                    "email `{}` already belongs to {} `{key}` in the database",
                    record["email"],
                    entity.key()
                ));
            }
        }
    }
    Ok(report)
}

/// Upserts a validated file in one transaction; any failure rolls all of it back. Returns
/// (inserted, updated).
pub async fn import(
    conn: &mut PgConnection,
    schema: &str,
    entity: Entity,
    file: &str,
    report: &Report,
) -> Result<(u64, u64), Error> {
    let columns = entity.columns();
    let placeholders: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if *c == "grade" {
                format!("nullif(${}, '')::int", i + 1)
            } else if *c == "email" {
                format!("nullif(${}, '')", i + 1)
            } else {
                format!("${}", i + 1)
            }
        })
        .collect();
    let updates: Vec<String> = columns[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let statement = format!(
        "insert into {} ({}) values ({}) on conflict ({}) do update set {}, updated_at = now() \
         returning (xmax = 0) as inserted",
        ident(schema, entity.name()),
        columns.join(", "),
        placeholders.join(", "),
        entity.key(),
        updates.join(", ")
    );
    let mut tx = conn.begin().await?;
    let (mut inserted, mut updated) = (0u64, 0u64);
    for record in &report.records {
        let mut query = sqlx::query_scalar::<_, bool>(AssertSqlSafe(statement.clone()));
        for column in columns {
            query = query.bind(record[column].clone());
        }
        if query.fetch_one(&mut *tx).await? {
            inserted += 1;
        } else {
            updated += 1;
        }
    }
    sqlx::query(AssertSqlSafe(format!(
        "insert into {} (entity, file, rows, inserted, updated) values ($1, $2, $3, $4, $5)",
        ident(schema, "import_batches")
    )))
    .bind(entity.name())
    .bind(file)
    .bind(report.records.len() as i32)
    .bind(inserted as i32)
    .bind(updated as i32)
    .execute(&mut *tx)
    .await?;
    audit(
        &mut tx,
        schema,
        "tenant.import",
        "tenant:import",
        json!({ "entity": entity.name(), "file": file, "inserted": inserted, "updated": updated }),
    )
    .await?;
    tx.commit().await?;
    Ok((inserted, updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted() {
        let rows = parse_csv("a,b,c\n1,\"x, \"\"y\"\"\",3\n\n").unwrap();
        assert_eq!(rows, vec![vec!["a", "b", "c"], vec!["1", "x, \"y\"", "3"]]);
        assert!(parse_csv("a\n\"open\n").is_err());
    }
}
