//! The usage and cost report over real connections (issue 16): queries and
//! execution time are attributed to the institution whose role ran them
//! (pg_stat_statements, preloaded in the test cluster), with the cost at the
//! given rates.

mod common;
use common::*;
use uuid::Uuid;

#[test]
fn queries_are_billed_to_the_institution_whose_context_ran_them() {
    const DB: &str = "it_usage_report";
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.notes (id serial PRIMARY KEY, body text)").unwrap();
    for role in ["ur_busy_owner", "ur_idle_owner"] {
        su.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
    }
    let busy = create_ok(&mut su, "ur_busy");
    let idle = create_ok(&mut su, "ur_idle");
    let institution = |su: &mut postgres::Client, id: &Uuid| -> Uuid {
        su.query_one("SELECT institution_id FROM tenant.tenant_schemas WHERE id = $1", &[id]).unwrap().get(0)
    };
    let busy_institution = institution(&mut su, &busy);

    // Without pg_stat_statements in the database, queries are unknown (NULL), not zero.
    let unknown: Option<i64> = su
        .query_one(
            "SELECT queries FROM tenant.usage_report(tstzrange(now() - interval '1 day', now() + interval '1 day'))
              WHERE schema_id = $1",
            &[&busy],
        )
        .unwrap()
        .get(0);
    assert_eq!(unknown, None);

    su.batch_execute("CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset();").unwrap();
    su.batch_execute(
        "DROP ROLE IF EXISTS it_usage_app; CREATE ROLE it_usage_app LOGIN; GRANT tenant_control_app TO it_usage_app;",
    )
    .unwrap();
    let mut app = connect_as("it_usage_app", DB);
    for i in 0..25 {
        let mut tx = app.transaction().unwrap();
        tx.execute("SELECT tenant.set_context($1)", &[&busy_institution]).unwrap();
        tx.execute("INSERT INTO notes (body) VALUES ($1)", &[&format!("note {i}")]).unwrap();
        tx.commit().unwrap();
    }

    let rows = su
        .query(
            "SELECT schema_id, queries, execution_ms, queries_since IS NOT NULL AS since_known, cost, total_cost::float8
               FROM tenant.usage_report(tstzrange(now() - interval '1 day', now() + interval '1 day'),
                                        '{\"thousand_queries\": 40, \"execution_hour\": 1}')",
            &[],
        )
        .unwrap();
    let of = |id: &Uuid| rows.iter().find(|r| r.get::<_, Uuid>("schema_id") == *id).expect("a row per institution");
    let (busy_row, idle_row) = (of(&busy), of(&idle));
    // Each of the 25 transactions ran three statements as ur_busy_owner: the
    // set_context call (it ends as the role it switched to), the INSERT and the
    // COMMIT (BEGIN ran as it_usage_app). Nothing ran as ur_idle_owner.
    let busy_queries: i64 = busy_row.get("queries");
    assert_eq!(busy_queries, 75);
    assert!(busy_row.get::<_, f64>("execution_ms") > 0.0);
    assert!(busy_row.get::<_, bool>("since_known"));
    assert_eq!(idle_row.get::<_, i64>("queries"), 0);
    assert_eq!(idle_row.get::<_, f64>("total_cost"), 0.0);
    // 40 per thousand queries: 0.04 a query.
    let cost: serde_json::Value = busy_row.get("cost");
    let queries_cost = cost["queries"].as_f64().unwrap();
    assert!((queries_cost - busy_queries as f64 * 0.04).abs() < 0.0001, "{cost}");
    assert!(busy_row.get::<_, f64>("total_cost") >= queries_cost);

    // Only platform administrators see the report.
    su.batch_execute("DROP ROLE IF EXISTS it_usage_nobody; CREATE ROLE it_usage_nobody LOGIN").unwrap();
    let mut nobody = connect_as("it_usage_nobody", DB);
    assert_eq!(
        sqlstate_of_failure(
            &mut nobody,
            "SELECT * FROM tenant.usage_report(tstzrange(now() - interval '1 day', now()))"
        ),
        "42501"
    );
}
