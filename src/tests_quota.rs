// Quota states, guards and enforcement, and shared-table isolation (included
// into the `tests` module). Roles, COPY and concurrent writers: pgrx-tests/tests/quota.rs.

fn sqlstate_of_statement(sql: &str) -> Option<String> {
    crate::subxact::atomically(|| crate::db::run(sql, &[])).err().map(|e| e.sqlstate())
}

fn quota_state(schema: &str) -> String {
    one::<String>(&format!("SELECT quota_state FROM tenant.tenant_schemas WHERE schema_name = '{schema}'")).unwrap()
}

fn guards_in(schema: &str) -> i64 {
    one::<i64>(&format!(
        "SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
          WHERE c.relnamespace = '{schema}'::regnamespace AND g.tgname = 'tc_quota_guard'"
    ))
    .unwrap()
}

/// Set the quota to the size that puts today's usage at `percent` of it.
fn quota_at_percent(id: &str, percent: i64) {
    let used = one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
    Spi::run(&format!("SELECT * FROM tenant.set_quota('{id}', '{}')", used * 100 / percent)).unwrap();
}

#[pg_test]
fn quota_states_guard_writes_and_lift_by_themselves() {
    Spi::run("SET tenant_control.quota_recheck_interval = 0").unwrap();
    Spi::run("CREATE TABLE tenant_template.notes (id serial PRIMARY KEY, body text)").unwrap();
    Spi::run("CREATE TABLE tenant_template.tags (name text)").unwrap();
    let (_, _, id, _) = create("efefefef-0000-4000-8000-000000000001", Some("quota_q"));
    let id = id.unwrap();
    Spi::run("INSERT INTO quota_q.notes (body) SELECT repeat(md5(i::text), 30) FROM generate_series(1, 2000) i").unwrap();

    // Far under the limit: OK, and no trigger at all on the tenant's tables.
    quota_at_percent(&id, 50);
    assert_eq!(quota_state("quota_q"), "OK");
    assert_eq!(guards_in("quota_q"), 0);

    // Near it: WARNING, logged, a guard on every table; writes still work.
    quota_at_percent(&id, 92);
    assert_eq!(quota_state("quota_q"), "WARNING");
    assert_eq!(guards_in("quota_q"), 2);
    assert_eq!(sqlstate_of_statement("INSERT INTO quota_q.notes (body) VALUES ('still fine')"), None);
    assert_eq!(
        one::<String>("SELECT metadata->>'to' FROM tenant.schema_operations WHERE operation_type = 'QUOTA_CHECK' ORDER BY id DESC LIMIT 1"),
        Some("WARNING".into())
    );

    // Over it: every way to grow is refused with 53400, reading and shrinking are not.
    quota_at_percent(&id, 110);
    assert_eq!(quota_state("quota_q"), "EXCEEDED");
    for growth in [
        "INSERT INTO quota_q.notes (body) VALUES ('one more')",
        "UPDATE quota_q.notes SET body = body || 'x' WHERE id = 1",
        "INSERT INTO quota_q.tags VALUES ('x') ON CONFLICT DO NOTHING",
        "CREATE TABLE quota_q.more (id int)",
        "CREATE INDEX ON quota_q.notes (body)",
    ] {
        assert_eq!(sqlstate_of_statement(growth), Some("53400".into()), "{growth}");
    }
    let refusal = crate::subxact::atomically(|| crate::db::run("INSERT INTO quota_q.tags VALUES ('x')", &[])).unwrap_err();
    assert!(refusal.message.contains("efefefef-0000-4000-8000-000000000001"), "{}", refusal.message);
    assert!(refusal.message.contains("quota_q") && refusal.message.contains("%"), "{}", refusal.message);
    assert_eq!(one::<i64>("SELECT count(*) FROM quota_q.notes"), Some(2001));
    // Nobody but the extension takes the guard away.
    assert_eq!(sqlstate_of_statement("DROP TRIGGER tc_quota_guard ON quota_q.notes"), Some("42501".into()));
    assert_eq!(sqlstate_of_statement("ALTER TABLE quota_q.notes DISABLE TRIGGER tc_quota_guard"), Some("42501".into()));
    // A migration is the extension's work, not the tenant growing: it goes through.
    let migration = "ALTER TABLE notes ADD COLUMN tag text; UPDATE notes SET tag = ''x''";
    assert_eq!(
        one::<String>(&format!("SELECT status FROM tenant.register_migration(1, '{migration}', 'tag the notes')")),
        Some("SUCCESS".into())
    );
    assert_eq!(
        one::<String>(&format!("SELECT status || coalesce(sqlstate, '') FROM tenant.migrate_institution_schema('{id}')")),
        Some("SUCCESS".into())
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM quota_q.notes WHERE tag = 'x'"), Some(2001));

    // Hysteresis: just under the limit is not enough to write again...
    Spi::run("DELETE FROM quota_q.notes WHERE id % 50 = 0").unwrap();
    Spi::run("SET tenant_control.quota_resume_percent = 80").unwrap();
    let used = one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
    Spi::run(&format!("UPDATE tenant.tenant_schemas SET quota_limit = {} WHERE id = '{id}'", used * 100 / 90)).unwrap();
    one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')"));
    assert_eq!(quota_state("quota_q"), "EXCEEDED");
    assert_eq!(sqlstate_of_statement("INSERT INTO quota_q.tags VALUES ('x')"), Some("53400".into()));
    // ...far enough under it, the guard lets writes through before any recount, and the recount lifts the state.
    Spi::run("TRUNCATE quota_q.notes").unwrap();
    assert_eq!(sqlstate_of_statement("INSERT INTO quota_q.tags VALUES ('x')"), None);
    one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')"));
    assert_eq!(quota_state("quota_q"), "OK");
    assert_eq!(guards_in("quota_q"), 0);
    assert_eq!(
        one::<String>(&format!(
            "SELECT string_agg(metadata->>'from' || '>' || (metadata->>'to'), ' ' ORDER BY id)
               FROM tenant.schema_operations WHERE operation_type = 'QUOTA_CHECK' AND schema_id = '{id}'"
        )),
        Some("OK>WARNING WARNING>EXCEEDED EXCEEDED>OK".into())
    );
    // Removing the quota leaves nothing behind either.
    quota_at_percent(&id, 120);
    assert_eq!(guards_in("quota_q"), 2);
    Spi::run(&format!("SELECT * FROM tenant.set_quota('{id}', NULL)")).unwrap();
    assert_eq!((quota_state("quota_q").as_str(), guards_in("quota_q")), ("OK", 0));
}

#[pg_test]
fn a_tenant_over_its_quota_too_long_is_suspended() {
    Spi::run("CREATE TABLE tenant_template.blobs (body text)").unwrap();
    let (_, _, id, _) = create("efefefef-0000-4000-8000-000000000002", Some("quota_s"));
    let id = id.unwrap();
    Spi::run("INSERT INTO quota_s.blobs SELECT repeat('x', 1000) FROM generate_series(1, 500)").unwrap();
    quota_at_percent(&id, 150);
    assert_eq!(quota_state("quota_s"), "EXCEEDED");
    // Without quota_suspend_after, or before it has passed, the tenant stays ACTIVE.
    one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')"));
    Spi::run("SET tenant_control.quota_suspend_after = '1h'").unwrap();
    one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')"));
    assert_eq!(one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")), Some("ACTIVE".into()));
    Spi::run(&format!("UPDATE tenant.tenant_schemas SET quota_state_since = now() - interval '2 hours' WHERE id = '{id}'")).unwrap();
    one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')"));
    assert_eq!(one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")), Some("SUSPENDED".into()));
    assert_eq!(
        one::<String>(&format!(
            "SELECT metadata->>'reason' FROM tenant.schema_operations WHERE schema_id = '{id}' AND operation_type = 'STATUS_CHANGE'"
        ))
        .map(|reason| reason.contains("quota_suspend_after")),
        Some(true)
    );
}

#[pg_test]
fn shared_tables_get_a_forced_policy_on_the_institution() {
    Spi::run("CREATE TABLE public.invoices (id serial, institution_id uuid, amount int)").unwrap();
    Spi::run("CREATE TABLE public.ledger (id serial, owner text)").unwrap();
    let message = one::<String>("SELECT tenant.enable_shared_table_isolation('public.invoices')").unwrap();
    assert!(message.contains("public.invoices"), "{message}");
    assert_eq!(
        one::<String>("SELECT relrowsecurity::text || relforcerowsecurity::text FROM pg_class WHERE oid = 'public.invoices'::regclass"),
        Some("truetrue".into())
    );
    let policy = one::<String>(
        "SELECT pg_get_expr(polqual, polrelid) || ' / ' || pg_get_expr(polwithcheck, polrelid)
           FROM pg_policy WHERE polname = 'tc_institution_isolation'",
    )
    .unwrap();
    assert_eq!(policy.matches("institution_id = ( SELECT tenant.current_institution()").count(), 2, "{policy}");
    // Twice is the same as once.
    one::<String>("SELECT tenant.enable_shared_table_isolation('public.invoices', 'institution_id')");
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_policy WHERE polrelid = 'public.invoices'::regclass"), Some(2));
    let refused = |sql: &str| sqlstate_of_statement(sql);
    assert_eq!(refused("SELECT tenant.enable_shared_table_isolation('public.nowhere')"), Some("42P01".into()));
    assert_eq!(refused("SELECT tenant.enable_shared_table_isolation('public.ledger')"), Some("42703".into()));
    assert_eq!(refused("SELECT tenant.enable_shared_table_isolation('public.ledger', 'owner')"), Some("42804".into()));
    assert_eq!(refused("SELECT tenant.enable_shared_table_isolation('tenant.tenant_schemas')"), Some("42809".into()));
    assert_eq!(refused("SELECT tenant.enable_shared_table_isolation(NULL)"), Some("22004".into()));
    // Outside a context there is no institution.
    assert_eq!(one::<pgrx::Uuid>("SELECT tenant.current_institution()"), None);
}

#[pg_test]
fn quota_messages_write_sizes_like_pg_size_pretty() {
    for bytes in [0_i64, 1, 10239, 10240, 10752, 1048576, 5 * 1024 * 1024 * 1024, 1536 * 1024 * 1024 * 1024 * 1024] {
        assert_eq!(
            Some(crate::quota::pretty(bytes)),
            one::<String>(&format!("SELECT pg_size_pretty({bytes}::bigint)")),
            "{bytes}"
        );
    }
}
