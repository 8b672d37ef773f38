//! Quota states, guards and enforcement, and shared-table isolation (included
//! into the `tests` module). Roles, COPY and concurrent writers: pgrx-tests/tests/quota.rs.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    pub(crate) fn sqlstate_of_statement(sql: &str) -> Option<String> {
        crate::core::subxact::atomically(|| crate::core::db::run(sql, &[])).err().map(|e| e.sqlstate())
    }

    pub(crate) fn quota_state(schema: &str) -> String {
        one::<String>(&format!("SELECT quota_state FROM tenant.tenant_schemas WHERE schema_name = '{schema}'")).unwrap()
    }

    pub(crate) fn guards_in(schema: &str) -> i64 {
        one::<i64>(&format!(
            "SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
          WHERE c.relnamespace = '{schema}'::regnamespace AND g.tgname = 'tc_quota_guard'"
        ))
        .unwrap()
    }

    /// Set the quota to the size that puts today's usage at `percent` of it.
    pub(crate) fn quota_at_percent(id: &str, percent: i64) {
        let used = one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        Spi::run(&format!("SELECT * FROM tenant.set_quota('{id}', '{}')", used * 100 / percent)).unwrap();
    }

    #[pg_test]
    fn quota_states_guard_writes_and_lift_by_themselves() {
        serialize_template_changes();
        Spi::run("SET tenant_control.quota_recheck_interval = 0").unwrap();
        Spi::run("CREATE TABLE tenant_template.notes (id serial PRIMARY KEY, body text)").unwrap();
        Spi::run("CREATE TABLE tenant_template.tags (name text)").unwrap();
        let (_, _, id, _) = create("efefefef-0000-4000-8000-000000000001", Some("quota_q"));
        let id = id.unwrap();
        Spi::run("INSERT INTO quota_q.notes (body) SELECT repeat(md5(i::text), 30) FROM generate_series(1, 2000) i")
            .unwrap();

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
            // DDL counts as the tenant's own when its role runs it.
            "SET LOCAL ROLE quota_q_owner; CREATE TABLE quota_q.more (id int)",
        ] {
            assert_eq!(sqlstate_of_statement(growth), Some("53400".into()), "{growth}");
        }
        // A superuser's DDL is not refused: pg_restore rebuilds an over-quota tenant's indexes and keys this way.
        assert_eq!(sqlstate_of_statement("CREATE INDEX notes_body ON quota_q.notes (body)"), None);
        assert_eq!(
            sqlstate_of_statement("SET LOCAL ROLE quota_q_owner; CREATE VIEW quota_q.recent AS SELECT 1 AS one"),
            Some("53400".into())
        );
        let refusal =
            crate::core::subxact::atomically(|| crate::core::db::run("INSERT INTO quota_q.tags VALUES ('x')", &[]))
                .unwrap_err();
        assert!(refusal.message.contains("efefefef-0000-4000-8000-000000000001"), "{}", refusal.message);
        assert!(refusal.message.contains("quota_q") && refusal.message.contains("%"), "{}", refusal.message);
        assert_eq!(one::<i64>("SELECT count(*) FROM quota_q.notes"), Some(2001));
        // Nobody but the extension takes the guard away.
        assert_eq!(sqlstate_of_statement("DROP TRIGGER tc_quota_guard ON quota_q.notes"), Some("42501".into()));
        assert_eq!(
            sqlstate_of_statement("ALTER TABLE quota_q.notes DISABLE TRIGGER tc_quota_guard"),
            Some("42501".into())
        );
        // A migration is the extension's work, not the tenant growing: it goes through.
        let migration = "ALTER TABLE notes ADD COLUMN tag text; UPDATE notes SET tag = ''x''";
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.register_migration(1, '{migration}', 'tag the notes')")),
            Some("SUCCESS".into())
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT status || coalesce(sqlstate, '') FROM tenant.migrate_institution_schema('{id}')"
            )),
            Some("SUCCESS".into())
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM quota_q.notes WHERE tag = 'x'"), Some(2001));

        // Hysteresis: just under the limit is not enough to write again...
        Spi::run("DELETE FROM quota_q.notes WHERE id % 50 = 0").unwrap();
        Spi::run("SET tenant_control.quota_resume_percent = 80").unwrap();
        let used = one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        Spi::run(&format!("UPDATE tenant.tenant_schemas SET quota_limit = {} WHERE id = '{id}'", used * 100 / 90))
            .unwrap();
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
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some("ACTIVE".into())
        );
        Spi::run(&format!(
            "UPDATE tenant.tenant_schemas SET quota_state_since = now() - interval '2 hours' WHERE id = '{id}'"
        ))
        .unwrap();
        one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')"));
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some("SUSPENDED".into())
        );
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
        assert_eq!(
            refused("SELECT tenant.enable_shared_table_isolation('public.ledger', 'owner')"),
            Some("42804".into())
        );
        assert_eq!(
            refused("SELECT tenant.enable_shared_table_isolation('tenant.tenant_schemas')"),
            Some("42809".into())
        );
        assert_eq!(refused("SELECT tenant.enable_shared_table_isolation(NULL)"), Some("22004".into()));
        // Outside a context there is no institution.
        assert_eq!(one::<pgrx::Uuid>("SELECT tenant.current_institution()"), None);
    }

    #[pg_test]
    fn quota_messages_write_sizes_like_pg_size_pretty() {
        for bytes in [0_i64, 1, 10239, 10240, 10752, 1048576, 5 * 1024 * 1024 * 1024, 1536 * 1024 * 1024 * 1024 * 1024]
        {
            assert_eq!(
                Some(crate::ops::quota::pretty(bytes)),
                one::<String>(&format!("SELECT pg_size_pretty({bytes}::bigint)")),
                "{bytes}"
            );
        }
    }

    #[pg_test]
    fn a_look_alike_guard_is_replaced_by_the_real_one() {
        Spi::run("SET tenant_control.quota_recheck_interval = 0").unwrap();
        Spi::run("CREATE TABLE tenant_template.pages (body text)").unwrap();
        Spi::run(
            "CREATE FUNCTION public.let_it_through() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
        )
        .unwrap();
        let (_, _, id, _) = create("efefefef-0000-4000-8000-000000000003", Some("quota_l"));
        let id = id.unwrap();
        Spi::run("INSERT INTO quota_l.pages SELECT repeat(md5(i::text), 30) FROM generate_series(1, 500) i").unwrap();
        // A trigger named like the guard that calls something else (tc_ names are
        // reserved now, so only one made before, or by the extension, can exist).
        crate::core::restricted::internal_ddl(|| {
            crate::core::db::run(
                "CREATE TRIGGER tc_quota_guard BEFORE INSERT OR UPDATE ON quota_l.pages
             FOR EACH STATEMENT EXECUTE FUNCTION public.let_it_through()",
                &[],
            )
        })
        .unwrap();
        quota_at_percent(&id, 110);
        assert_eq!(quota_state("quota_l"), "EXCEEDED");
        assert_eq!(
        one::<String>(
            "SELECT string_agg(tgfoid::regproc::text, ',') FROM pg_trigger WHERE tgrelid = 'quota_l.pages'::regclass"
        ),
        Some("tenant.quota_guard".into())
    );
        assert_eq!(sqlstate_of_statement("INSERT INTO quota_l.pages VALUES ('more')"), Some("53400".into()));
    }

    #[pg_test]
    fn tc_names_are_reserved_in_tenant_schemas_and_the_template() {
        Spi::run("CREATE TABLE tenant_template.cards (id int PRIMARY KEY)").unwrap();
        Spi::run("CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'")
            .unwrap();
        create("efefefef-0000-4000-8000-000000000004", Some("names_r"));
        for taken in [
        "CREATE TABLE names_r.tc_table (x int)",
        "CREATE TABLE tenant_template.tc_table (x int)",
        "CREATE VIEW names_r.tc_view AS SELECT 1",
        "CREATE SEQUENCE names_r.tc_seq",
        "CREATE INDEX tc_index ON names_r.cards (id)",
        "CREATE FUNCTION names_r.tc_function() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TYPE names_r.tc_type AS (x int)",
        "CREATE DOMAIN names_r.positive AS int CONSTRAINT tc_check CHECK (VALUE > 0)",
        "CREATE TRIGGER tc_quota_guard BEFORE INSERT ON names_r.cards FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()",
        "CREATE POLICY tc_policy ON names_r.cards USING (true)",
        "CREATE RULE tc_rule AS ON INSERT TO names_r.cards DO INSTEAD NOTHING",
        "ALTER TABLE names_r.cards ADD CONSTRAINT tc_positive CHECK (id > 0)",
        "ALTER TABLE names_r.cards RENAME TO tc_cards",
        "CREATE TRIGGER fine BEFORE INSERT ON names_r.cards FOR EACH STATEMENT EXECUTE FUNCTION public.nothing();
         ALTER TRIGGER fine ON names_r.cards RENAME TO tc_fine",
    ] {
        assert_eq!(sqlstate_of_statement(taken), Some("42939".into()), "{taken}");
    }
        // A table named without its schema is judged by the schema it went to.
        for (search_path, table, refused) in
            [("names_r", "tc_plain", true), ("tenant_template", "tc_plain", true), ("public", "tc_plain", false)]
        {
            let statement = format!("SET LOCAL search_path = {search_path}; CREATE TABLE {table} (x int)");
            assert_eq!(sqlstate_of_statement(&statement).is_some(), refused, "{statement}");
        }
        assert_eq!(sqlstate_of_statement("CREATE TEMP TABLE tc_temporary (x int)"), None);
        Spi::run("RESET search_path").unwrap();
        let refusal = crate::core::subxact::atomically(|| {
            crate::core::db::run("CREATE POLICY tc_policy ON names_r.cards USING (true)", &[])
        })
        .unwrap_err();
        assert_eq!(refusal.message, "policy name \"tc_policy\" in schema \"names_r\" is reserved");
        // Elsewhere the names are free, and the extension's own work may use them.
        assert_eq!(sqlstate_of_statement("CREATE TABLE public.tc_anything (x int)"), None);
        assert_eq!(sqlstate_of_statement("CREATE TABLE names_r.ordinary (tc_column int)"), None);
        crate::core::restricted::internal_ddl(|| crate::core::db::run("CREATE TABLE names_r.tc_own (x int)", &[]))
            .unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_class WHERE relname = 'tc_own'"), Some(1));
    }

    #[pg_test]
    fn the_internal_work_mark_is_backend_memory_only() {
        let active = || one::<bool>("SELECT tenant.internal_work_active()");
        assert_eq!(active(), Some(false));
        assert_eq!(crate::core::restricted::internal(|| Ok(active())).unwrap(), Some(true));
        assert_eq!(active(), Some(false), "the mark ends with the work");
        // Ended by an error too.
        let failed: crate::core::errors::TcResult<()> = crate::core::restricted::internal(|| {
            crate::core::subxact::atomically(|| crate::core::db::run("SELECT 1/0", &[]))
        });
        assert!(failed.is_err());
        assert_eq!(active(), Some(false));
        // Code run as a tenant's role in a security-restricted operation is not the extension's work.
        create("efefefef-0000-4000-8000-000000000005", Some("mark_m"));
        // (The tenant's role may not execute tenant.internal_work_active(): ask the function itself.)
        let inside = crate::core::restricted::internal(|| {
            crate::core::restricted::as_role("mark_m_owner", "mark_m", || {
                Ok(crate::core::restricted::internal_work_active_sql())
            })
        });
        assert!(!inside.unwrap());
        // The setting that used to mark it marks nothing: the template watcher sees this change.
        Spi::run("SET LOCAL tenant_control.internal_ddl = on").unwrap();
        assert_eq!(active(), Some(false));
        let before = one::<i64>("SELECT count(*) FROM tenant.template_changes").unwrap();
        Spi::run("CREATE TABLE tenant_template.watched (x int)").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.template_changes"), Some(before + 1));
    }
}
