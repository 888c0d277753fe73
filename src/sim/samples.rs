//! The files a new sim's `server/` starts with: the import CSVs (small, well within the pilot
//! row limit), `package.json` with the seed's scripts, and the incident runbook with the SLA
//! table that `pnpm golive:check` looks for.

const FIRST: [&str; 10] = [
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jade",
];
const LAST: [&str; 8] = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Patel",
    "Nakamura",
    "Silva",
    "Kowalski",
    "Haddad",
];
/// (code, name, grade)
pub const CLASSES: [(&str, &str, u32); 4] = [
    ("7A", "Year 7 A", 7),
    ("7B", "Year 7 B", 7),
    ("8A", "Year 8 A", 8),
    ("8B", "Year 8 B", 8),
];
/// (code, name)
pub const SUBJECTS: [(&str, &str); 5] = [
    ("MATH", "Mathematics"),
    ("ENG", "English"),
    ("SCI", "Science"),
    ("HIST", "History"),
    ("ART", "Art"),
];
pub const STUDENTS: usize = 40;
pub const TEACHERS: usize = 6;

pub fn students_csv() -> String {
    let mut out = String::from("student_id,first_name,last_name,email,class_code\n");
    for i in 0..STUDENTS {
        let (first, last) = (FIRST[i % FIRST.len()], LAST[(i / 2) % LAST.len()]);
        out.push_str(&format!(
            "S{:04},{first},{last},{}.{}{}@students.example,{}\n",
            i + 1,
            first.to_lowercase(),
            last.to_lowercase(),
            i + 1,
            CLASSES[i % CLASSES.len()].0
        ));
    }
    out
}

pub fn teachers_csv() -> String {
    let mut out = String::from("teacher_id,first_name,last_name,email,subject_code\n");
    for i in 0..TEACHERS {
        let (first, last) = (FIRST[(i + 3) % FIRST.len()], LAST[(i + 5) % LAST.len()]);
        out.push_str(&format!(
            "T{:03},{first},{last},{}.{}@staff.example,{}\n",
            i + 1,
            first.to_lowercase(),
            last.to_lowercase(),
            SUBJECTS[i % SUBJECTS.len()].0
        ));
    }
    out
}

pub fn classes_csv() -> String {
    let mut out = String::from("class_code,name,grade\n");
    for (code, name, grade) in CLASSES {
        out.push_str(&format!("{code},{name},{grade}\n"));
    }
    out
}

pub fn subjects_csv() -> String {
    let mut out = String::from("subject_code,name\n");
    for (code, name) in SUBJECTS {
        out.push_str(&format!("{code},{name}\n"));
    }
    out
}

/// The seed's scripts (its "NEW SCRIPTS ADDED TO package.json" plus the ones the playbooks
/// call); here for the operator's eye: the `pnpm` shim is what runs them.
pub const PACKAGE_JSON: &str = r#"{
  "name": "school-server",
  "version": "1.5.0",
  "private": true,
  "description": "Simulated by `runway sim`: the pnpm shim in ../bin runs these scripts.",
  "scripts": {
    "dev": "ts-node-dev src/server.ts",
    "build": "tsc -p .",
    "provision:tenant": "ts-node src/scripts/provision-tenant.ts",
    "tenant:preflight": "ts-node src/scripts/tenant-preflight.ts",
    "tenant:import": "ts-node src/scripts/tenant-import.ts",
    "tenant:isolate": "ts-node src/scripts/tenant-isolate.ts",
    "tenant:reactivate": "ts-node src/scripts/tenant-reactivate.ts",
    "simulate:usage": "ts-node src/scripts/task05-usage-simulation.ts",
    "golive:check": "ts-node src/scripts/task05-golive-checklist.ts"
  }
}
"#;

/// Phase E of the seed: the support operating model, which the go-live checklist's SLA check
/// finds here.
pub const INCIDENT_RUNBOOK: &str = "# First school incident runbook (simulated)

| Severity | Example            | Response | Resolution        |
| -------- | ------------------ | -------- | ----------------- |
| P0       | Login broken       | 5 min    | 30 min            |
| P1       | Attendance failing | 30 min   | 2 hours           |
| P2       | Slow reports       | Same day | Next business day |
| P3       | Feature requests   | 3 days   | Next sprint       |

Escalation ladder: Support Tier 1 -> Engineering On-Call -> Senior Engineer -> CTO.
Recovery levels 1-4: the rollback-level-*.yaml playbooks.
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sample_files_have_unique_keys_and_emails() {
        for csv in [students_csv(), teachers_csv()] {
            let rows: Vec<Vec<&str>> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').collect())
                .collect();
            let keys: HashSet<&str> = rows.iter().map(|r| r[0]).collect();
            let emails: HashSet<&str> = rows.iter().map(|r| r[3]).collect();
            assert_eq!(keys.len(), rows.len());
            assert_eq!(emails.len(), rows.len());
        }
        assert_eq!(students_csv().lines().count(), STUDENTS + 1);
    }
}
