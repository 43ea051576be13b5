//! The run as data.
//!
//! A [`Plan`] lists the steps `infra run` will execute, each with what it
//! reads and writes. It is computed before any side effect: `infra plan` and
//! `run --dry-run` print it, and the pipeline executes exactly it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::Buckets;

/// A pipeline step, numbered as in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// 0: create `bootcampdb.user_purchase` and load `raw/user_purchase.csv`.
    LoadPurchases,
    /// 1: dump the table to `staging/user_purchase.csv`.
    DumpPurchases,
    /// 2: `pyspark/tokenizer.py` → `staging/reviews/`.
    Tokenize,
    /// 3: `pyspark/user_behavior.py` → `staging/user_behavior/`.
    UserBehavior,
    /// 4: load `staging/user_behavior/` into the warehouse.
    LoadWarehouse,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::LoadPurchases,
        Step::DumpPurchases,
        Step::Tokenize,
        Step::UserBehavior,
        Step::LoadWarehouse,
    ];

    pub fn number(self) -> usize {
        self as usize
    }

    /// The steps whose output this step reads. A resumed run may skip a
    /// step only if the run it continues has it succeeded.
    pub fn needs(self) -> &'static [Step] {
        match self {
            Step::LoadPurchases | Step::Tokenize => &[],
            Step::DumpPurchases => &[Step::LoadPurchases],
            Step::UserBehavior => &[Step::DumpPurchases, Step::Tokenize],
            Step::LoadWarehouse => &[Step::UserBehavior],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::LoadPurchases => "load_purchases",
            Step::DumpPurchases => "dump_purchases",
            Step::Tokenize => "tokenize",
            Step::UserBehavior => "user_behavior",
            Step::LoadWarehouse => "load_warehouse",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.name())
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Step, String> {
        Step::ALL
            .into_iter()
            .find(|step| s == step.name() || s == step.number().to_string())
            .ok_or_else(|| {
                format!(
                    "unknown step `{s}`; steps are {}",
                    Step::ALL
                        .map(|s| format!("{} ({})", s.number(), s.name()))
                        .join(", ")
                )
            })
    }
}

/// Which steps a run executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    From(Step),
    Only(Step),
}

impl Selection {
    pub fn steps(self) -> Vec<Step> {
        match self {
            Selection::All => Step::ALL.to_vec(),
            Selection::From(first) => Step::ALL.into_iter().filter(|s| *s >= first).collect(),
            Selection::Only(step) => vec![step],
        }
    }
}

/// One step of the plan, with the locations it reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    pub step: Step,
    pub description: String,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
}

/// The steps a run will execute, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    /// `run.max_rejected`: step 0 fails above it (unset: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rejected: Option<crate::settings::MaxRejected>,
}

/// The locations every step uses. One place, so the plan and the pipeline
/// can never disagree about where data lives.
pub mod keys {
    pub const PURCHASES_CSV: &str = "user_purchase.csv";
    pub const REVIEWS_CSV: &str = "movie_review.csv";
    pub const PURCHASE_REJECTS: &str = "rejects/user_purchase.csv";
    pub const REVIEW_REJECTS: &str = "rejects/movie_review";
    pub const REVIEWS: &str = "reviews";
    pub const USER_BEHAVIOR: &str = "user_behavior";
    pub const TOKENIZER_METRICS: &str = "_metrics/tokenizer";
    pub const USER_BEHAVIOR_METRICS: &str = "_metrics/user_behavior";
    pub const TOKENIZER_PY: &str = "tokenizer.py";
    pub const USER_BEHAVIOR_PY: &str = "user_behavior.py";
    pub const PURCHASE_TABLE: &str = "bootcampdb.user_purchase";
}

impl Plan {
    /// The plan for `selection`, with locations resolved against `buckets`.
    pub fn new(selection: Selection, buckets: &Buckets, warehouse_table: &str) -> Plan {
        let steps = selection
            .steps()
            .into_iter()
            .map(|step| planned(step, buckets, warehouse_table))
            .collect();
        Plan {
            steps,
            max_rejected: None,
        }
    }
}

fn planned(step: Step, t: &Buckets, warehouse_table: &str) -> PlannedStep {
    use keys::*;
    let (description, reads, writes) = match step {
        Step::LoadPurchases => (
            "create the purchase table and load the CSV, validating every row",
            vec![t.raw.uri(PURCHASES_CSV)],
            vec![
                format!("postgres table {PURCHASE_TABLE}"),
                t.staging.uri(PURCHASE_REJECTS),
            ],
        ),
        Step::DumpPurchases => (
            "dump the purchase table as CSV",
            vec![format!("postgres table {PURCHASE_TABLE}")],
            vec![t.staging.uri(PURCHASES_CSV)],
        ),
        Step::Tokenize => (
            "tokenize reviews on Spark: positive_review per review",
            vec![t.raw.uri(REVIEWS_CSV), t.code.uri(TOKENIZER_PY)],
            vec![t.staging.uri(REVIEWS), t.staging.uri(REVIEW_REJECTS)],
        ),
        Step::UserBehavior => (
            "aggregate purchases and reviews per customer on Spark",
            vec![
                t.staging.uri(PURCHASES_CSV),
                t.staging.uri(REVIEWS),
                t.code.uri(USER_BEHAVIOR_PY),
            ],
            vec![t.staging.uri(USER_BEHAVIOR)],
        ),
        Step::LoadWarehouse => (
            "replace the warehouse table with the metric",
            vec![t.staging.uri(USER_BEHAVIOR)],
            vec![format!("warehouse table {warehouse_table}")],
        ),
    };
    PlannedStep {
        step,
        description: description.to_owned(),
        reads,
        writes,
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for planned in &self.steps {
            writeln!(f, "step {}: {}", planned.step, planned.description)?;
            for read in &planned.reads {
                writeln!(f, "    reads  {read}")?;
            }
            for write in &planned.writes {
                writeln!(f, "    writes {write}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_by_number_or_name() {
        assert_eq!("3".parse::<Step>().unwrap(), Step::UserBehavior);
        assert_eq!("tokenize".parse::<Step>().unwrap(), Step::Tokenize);
        let err = "5".parse::<Step>().unwrap_err();
        assert!(err.contains("0 (load_purchases)"), "{err}");
    }

    #[test]
    fn selections_pick_steps_in_order() {
        assert_eq!(Selection::All.steps().len(), 5);
        assert_eq!(
            Selection::From(Step::UserBehavior).steps(),
            [Step::UserBehavior, Step::LoadWarehouse]
        );
        assert_eq!(Selection::Only(Step::Tokenize).steps(), [Step::Tokenize]);
    }
}
