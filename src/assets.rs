//! Files `infra` carries inside its binary, so it runs from any directory.
//!
//! The sources stay readable where a user expects them (`sql/`,
//! `pyspark/`); they are compiled in here and written out or uploaded by
//! the steps that need them.

/// Step 0's DDL.
pub const CREATE_SCHEMA_SQL: &str = include_str!("../sql/create_schema.sql");

/// The pins of the venv that runs Spark locally.
pub const PYSPARK_REQUIREMENTS: &str = include_str!("../pyspark/requirements.txt");

/// The PySpark jobs `up` uploads to the code bucket: (key, contents).
pub const PYSPARK_SCRIPTS: &[(&str, &str)] = &[
    ("tokenizer.py", include_str!("../pyspark/tokenizer.py")),
    (
        "user_behavior.py",
        include_str!("../pyspark/user_behavior.py"),
    ),
];
