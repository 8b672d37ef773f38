//! Migrations and the warm pool (included into the `tests` module).

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    fn status_of(sql: &str) -> (String, Option<String>) {
        Spi::connect_mut(|c| {
            let row = c.update(sql, None, &[]).unwrap().first();
            (
                row.get_by_name::<String, _>("status").unwrap().unwrap(),
                row.get_by_name::<String, _>("sqlstate").unwrap(),
            )
        })
    }

    fn register(version: i32, script: &str) -> (String, Option<String>) {
        status_of(&format!(
            "SELECT * FROM tenant.register_migration({version}, {}, 'test migration {version}')",
            pgrx::spi::quote_literal(script)
        ))
    }

    fn version_of(schema: &str) -> i32 {
        one::<i32>(&format!("SELECT version FROM tenant.tenant_schemas WHERE schema_name = '{schema}'")).unwrap()
    }

    #[pg_test]
    fn a_registered_migration_changes_the_template_and_new_tenants() {
        serialize_template_changes();
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000001", Some("mig_old")).0, "SUCCESS");
        assert_eq!(register(1, "CREATE TABLE notes (id int PRIMARY KEY, body text)"), ("SUCCESS".into(), None));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_template' AND tablename = 'notes'"),
            Some(1)
        );
        // Numbers follow each other.
        assert_eq!(register(3, "SELECT 1"), ("ERROR".into(), Some("22023".into())));
        assert_eq!(register(1, "SELECT 1"), ("ERROR".into(), Some("22023".into())));
        // A new tenant starts at the template's version; an old one is behind until migrated.
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000002", Some("mig_new")).0, "SUCCESS");
        assert_eq!(version_of("mig_new"), 1);
        assert_eq!(one::<i64>("SELECT count(*) FROM mig_new.notes"), Some(0));
        assert_eq!(version_of("mig_old"), 0);
        assert_eq!(one::<i32>("SELECT pending FROM tenant.migration_status WHERE schema_name = 'mig_old'"), Some(1));
        let id = one::<String>("SELECT id::text FROM tenant.find_institution('mig_old')").unwrap();
        assert_eq!(
            status_of(&format!("SELECT * FROM tenant.migrate_institution_schema('{id}')")),
            ("SUCCESS".into(), None)
        );
        assert_eq!(version_of("mig_old"), 1);
        assert_eq!(one::<i64>("SELECT count(*) FROM mig_old.notes"), Some(0));
        // What the migration added is usable by the tenant's role, as in new tenants.
        assert_eq!(one::<bool>("SELECT has_table_privilege('mig_old_owner', 'mig_old.notes', 'INSERT')"), Some(true));
        assert_eq!(one::<bool>("SELECT has_table_privilege('mig_new_owner', 'mig_new.notes', 'INSERT')"), Some(true));
    }

    #[pg_test]
    fn a_failing_migration_leaves_the_tenant_as_it_was() {
        serialize_template_changes();
        assert_eq!(register(1, "CREATE TABLE notes (id int PRIMARY KEY)"), ("SUCCESS".into(), None));
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000003", Some("mig_broken")).0, "SUCCESS");
        Spi::run("DROP TABLE mig_broken.notes").unwrap();
        assert_eq!(
            register(2, "CREATE TABLE tags (id int); ALTER TABLE notes ADD COLUMN body text"),
            ("SUCCESS".into(), None)
        );
        let id = one::<String>("SELECT id::text FROM tenant.find_institution('mig_broken')").unwrap();
        assert_eq!(
            status_of(&format!("SELECT * FROM tenant.migrate_institution_schema('{id}')")),
            ("ERROR".into(), Some("42P01".into()))
        );
        assert_eq!(version_of("mig_broken"), 1);
        // The migration's first statement was rolled back with the second.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'mig_broken' AND tablename = 'tags'"),
            Some(0)
        );
        assert_eq!(
        one::<String>("SELECT last_migration_status || '/' || last_migration_sqlstate FROM tenant.migration_status WHERE schema_name = 'mig_broken'"),
        Some("FAILED/42P01".into())
    );
    }

    /// An error of the tenant's (a migration's own RAISE, a CHECK of the
    /// tenant's) keeps its SQLSTATE, message and detail in the result row and
    /// the operation log, a SQLSTATE PostgreSQL does not define included.
    #[pg_test]
    fn an_error_of_tenant_code_keeps_its_own_sqlstate() {
        serialize_template_changes();
        assert_eq!(register(1, "CREATE TABLE notes (id int PRIMARY KEY)"), ("SUCCESS".into(), None));
        for (schema, n) in [("mig_raises", 4), ("mig_checks", 5)] {
            assert_eq!(create(&format!("d0d0d0d0-0000-4000-8000-00000000000{n}"), Some(schema)).0, "SUCCESS");
        }
        Spi::run("ALTER TABLE mig_checks.notes ADD CONSTRAINT positive CHECK (id > 0)").unwrap();
        assert_eq!(
            register(
                2,
                "INSERT INTO notes VALUES (-1);
                 DO $$ BEGIN IF current_schema() = 'mig_raises' THEN
                     RAISE EXCEPTION 'no notes here' USING ERRCODE = 'P0123', DETAIL = 'the tenant says why';
                 END IF; END $$"
            ),
            ("SUCCESS".into(), None)
        );
        let migrated = |schema: &str| {
            let id = one::<String>(&format!("SELECT id::text FROM tenant.find_institution('{schema}')")).unwrap();
            one::<String>(&format!(
                "SELECT status || '/' || sqlstate || '/' || message FROM tenant.migrate_institution_schema('{id}')"
            ))
            .unwrap()
        };
        let raised = migrated("mig_raises");
        assert!(
            raised.starts_with("ERROR/P0123/no notes here (the tenant says why; migration 2 on schema mig_raises)"),
            "{raised}"
        );
        let checked = migrated("mig_checks");
        assert!(
            checked.starts_with("ERROR/23514/new row for relation \"notes\" violates check constraint \"positive\""),
            "{checked}"
        );
        assert_eq!(
            one::<String>(
                "SELECT string_agg(last_migration_sqlstate, ',' ORDER BY schema_name) FROM tenant.migration_status
                  WHERE schema_name IN ('mig_raises', 'mig_checks')"
            ),
            Some("23514,P0123".into())
        );
    }

    /// Raised again, such an error goes out as XX000 (pgrx raises only the
    /// codes it knows) and names its own SQLSTATE in the detail.
    #[pg_test]
    fn a_raised_error_of_tenant_code_names_its_own_sqlstate() {
        let raise = |code: &str| {
            crate::core::subxact::atomically(|| {
                crate::core::db::run(
                    &format!("DO $$ BEGIN RAISE EXCEPTION 'no' USING ERRCODE = '{code}', DETAIL = 'why'; END $$"),
                    &[],
                )
            })
            .unwrap_err()
        };
        let own = raise("P0123");
        assert_eq!((own.sqlstate(), own.message.as_str(), own.detail.as_deref()), ("P0123".into(), "no", Some("why")));
        assert_eq!(own.into_report().detail(), Some("why (SQLSTATE P0123)"));
        let known = raise("23514");
        assert_eq!(known.sqlstate(), "23514");
        assert_eq!(known.into_report().detail(), Some("why"));
    }

    #[pg_test]
    fn sign_up_claims_a_spare_from_the_warm_pool() {
        Spi::run(
            "CREATE TABLE tenant_template.items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
         CREATE FUNCTION tenant_template.item_count() RETURNS bigint LANGUAGE sql
             SET search_path = tenant_template AS 'SELECT count(*) FROM items'",
        )
        .unwrap();
        assert_eq!(status_of("SELECT * FROM tenant.add_spare_schema()"), ("SUCCESS".into(), None));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.warm_pool WHERE ready"), Some(1));
        let spare = one::<String>("SELECT schema_name FROM tenant.warm_pool").unwrap();
        // Spares are no institution's: not listed, not found.
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.list_institutions()"), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM tenant.find_institution('{spare}')")), Some(0));

        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000004", Some("pooled")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.warm_pool"), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{spare}'")), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{spare}_owner'")), Some(0));
        assert_eq!(
        one::<bool>("SELECT (metadata->>'from_pool')::boolean FROM tenant.schema_operations WHERE metadata->>'schema_name' = 'pooled'"),
        Some(true)
    );
        assert_eq!(one::<bool>("SELECT has_table_privilege('pooled_owner', 'pooled.items', 'INSERT')"), Some(true));
        assert_eq!(
            one::<String>(
                "SELECT array_to_string(proconfig, ';') FROM pg_proc WHERE oid = 'pooled.item_count'::regproc"
            ),
            Some("search_path=pooled".into())
        );
        Spi::run("INSERT INTO pooled.items (name) VALUES ('x')").unwrap();
        assert_eq!(one::<i64>("SELECT pooled.item_count()"), Some(1));
        // With the pool empty, sign-up builds the schema itself.
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000005", Some("built")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM built.items"), Some(0));
    }

    #[pg_test]
    fn spares_are_migrated_and_only_current_ones_are_claimed() {
        serialize_template_changes();
        assert_eq!(status_of("SELECT * FROM tenant.add_spare_schema()"), ("SUCCESS".into(), None));
        assert_eq!(register(1, "CREATE TABLE notes (id int)"), ("SUCCESS".into(), None));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.warm_pool WHERE NOT ready"), Some(1));
        // A stale spare is not handed out.
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000006", Some("fresh")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.warm_pool"), Some(1));
        let spare = one::<String>("SELECT schema_id::text FROM tenant.warm_pool").unwrap();
        assert_eq!(
            status_of(&format!("SELECT * FROM tenant.migrate_institution_schema('{spare}')")),
            ("SUCCESS".into(), None)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.warm_pool WHERE ready"), Some(1));
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000007", Some("claimer")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM claimer.notes"), Some(0));
        assert_eq!(version_of("claimer"), 1);
    }

    #[pg_test]
    fn transaction_control_in_a_migration_is_refused_with_2d000() {
        serialize_template_changes();
        Spi::run("CREATE TABLE tenant_template.items (id int PRIMARY KEY)").unwrap();
        for script in ["CREATE TABLE a (id int); COMMIT", "ROLLBACK", "SAVEPOINT s; CREATE TABLE a (id int)"] {
            assert_eq!(register(1, script), ("ERROR".into(), Some("2D000".into())), "{script}");
        }
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_template' AND tablename = 'a'"),
            Some(0)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.migrations"), Some(0));
        let message = one::<String>(
            "SELECT message FROM tenant.register_migration(1, 'CREATE TABLE a (id int); COMMIT', 'commits')",
        )
        .unwrap();
        assert!(message.contains("migration 1 contains a transaction control statement"), "{message}");
    }

    #[pg_test]
    fn migrations_run_as_the_role_that_stands_for_the_tenant() {
        serialize_template_changes();
        // Built by the installing superuser, as the README shows.
        Spi::run(
            "CREATE TABLE tenant_template.lent_items (id int PRIMARY KEY, note text);
             REVOKE ALL ON tenant_template.lent_items FROM tenant_template_owner;
             GRANT SELECT, INSERT ON tenant_template.lent_items TO tenant_template_owner;
             GRANT UPDATE (note) ON tenant_template.lent_items TO tenant_template_owner",
        )
        .unwrap();
        assert_eq!(create("d0d0d0d0-0000-4000-8000-000000000010", Some("mig_role")).0, "SUCCESS");
        assert_eq!(
        register(1, "ALTER TABLE lent_items ADD COLUMN who text DEFAULT current_user; CREATE TABLE lent_runs (who text DEFAULT current_user); INSERT INTO lent_runs DEFAULT VALUES"),
        ("SUCCESS".into(), None)
    );
        assert_eq!(one::<String>("SELECT who FROM tenant_template.lent_runs"), Some("tenant_template_owner".into()));
        let id = one::<String>("SELECT id::text FROM tenant.find_institution('mig_role')").unwrap();
        assert_eq!(
            status_of(&format!("SELECT * FROM tenant.migrate_institution_schema('{id}')")),
            ("SUCCESS".into(), None)
        );
        assert_eq!(one::<String>("SELECT who FROM mig_role.lent_runs"), Some("mig_role_owner".into()));
        // The ownership lent to the role for the script went back to the superuser.
        assert_eq!(one::<bool>("SELECT relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_class WHERE oid = 'mig_role.lent_items'::regclass"), Some(true));
        assert_eq!(one::<bool>("SELECT relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_class WHERE oid = 'tenant_template.lent_items'::regclass"), Some(true));
        // What the migration created is owned as if the superuser had run it, usable by the tenant's role.
        assert_eq!(one::<bool>("SELECT relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_class WHERE oid = 'tenant_template.lent_runs'::regclass"), Some(true));
        assert_eq!(one::<bool>("SELECT relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_class WHERE oid = 'mig_role.lent_runs'::regclass"), Some(true));
        assert_eq!(
            one::<bool>("SELECT has_table_privilege('mig_role_owner', 'mig_role.lent_runs', 'INSERT')"),
            Some(true)
        );
        // Lending the superuser's table to the role and taking it back keeps
        // the grants that named the role, in the template and in the tenant.
        for (role, table) in
            [("tenant_template_owner", "tenant_template.lent_items"), ("mig_role_owner", "mig_role.lent_items")]
        {
            for privilege in ["SELECT", "INSERT"] {
                let held = one::<bool>(&format!("SELECT has_table_privilege('{role}', '{table}', '{privilege}')"));
                assert_eq!(held, Some(true), "{role} {privilege} on {table}");
            }
            let column = one::<bool>(&format!("SELECT has_column_privilege('{role}', '{table}', 'note', 'UPDATE')"));
            assert_eq!(column, Some(true), "{role} UPDATE (note) on {table}");
            let whole = one::<bool>(&format!("SELECT has_table_privilege('{role}', '{table}', 'DELETE')"));
            let acl = one::<String>(&format!("SELECT relacl::text FROM pg_class WHERE oid = '{table}'::regclass"));
            assert_eq!(whole, Some(false), "{role} DELETE on {table}: {acl:?}");
        }
        assert_eq!(
            one::<bool>("SELECT has_schema_privilege('tenant_template_owner', 'tenant_template', 'CREATE')"),
            Some(false)
        );
    }

    /// Where a migration's objects point in a tenant: the search_path of its
    /// function, the roles of its policy, who holds its grants.
    fn bindings(schema: &str) -> (Option<String>, Option<String>, Option<bool>, Option<bool>) {
        (
            one::<String>(&format!("SELECT array_to_string(proconfig, ';') FROM pg_proc WHERE oid = '{schema}.note_count'::regproc")),
            one::<String>(&format!(
                "SELECT string_agg(r::regrole::text, ',') FROM pg_policy, unnest(polroles) r WHERE polrelid = '{schema}.notes'::regclass"
            )),
            one::<bool>(&format!("SELECT has_table_privilege('tenant_template_owner', '{schema}.notes', 'SELECT')")),
            one::<bool>(&format!("SELECT has_function_privilege('tenant_template_owner', '{schema}.note_count()', 'EXECUTE')")),
        )
    }

    #[pg_test]
    fn a_migration_binds_its_new_objects_to_each_tenant_as_a_copy_does() {
        serialize_template_changes();
        let id = created("d0d0d0d0-0000-4000-8000-000000000031", "mig_bind");
        let script = "CREATE TABLE notes (id int PRIMARY KEY, body text);
            ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own_notes ON notes TO tenant_template_owner USING (true);
            CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql STABLE SET search_path = tenant_template, pg_temp
                AS $$ SELECT count(*) FROM notes $$;
            GRANT SELECT, INSERT ON notes TO tenant_template_owner;
            REVOKE ALL ON FUNCTION note_count() FROM PUBLIC;
            GRANT EXECUTE ON FUNCTION note_count() TO tenant_template_owner;";
        assert_eq!(register(1, script), ("SUCCESS".into(), None));
        let migrated = format!("SELECT * FROM tenant.migrate_institution_schema('{id}')");
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        // A tenant copied from the migrated template is the reference.
        created("d0d0d0d0-0000-4000-8000-000000000032", "mig_bind_new");
        for schema in ["mig_bind", "mig_bind_new"] {
            assert_eq!(
                bindings(schema),
                (
                    Some(format!("search_path={schema}, pg_temp")),
                    Some(format!("{schema}_owner")),
                    Some(false),
                    Some(false)
                ),
                "{schema}"
            );
        }
        Spi::run("INSERT INTO mig_bind.notes VALUES (1, 'mine')").unwrap();
        assert_eq!(one::<i64>("SELECT mig_bind.note_count()"), Some(1), "it counts the tenant's notes");
        Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new(), "no drift from the template");
    }

    /// A migration recounts a tenant (and settles its quota state) when it
    /// created, dropped or rewrote a relation or wrote rows, and leaves the
    /// registry alone when it changed neither (a one-column ALTER).
    #[pg_test]
    fn a_migration_that_grows_tables_keeps_quotas_right() {
        serialize_template_changes();
        assert_eq!(create("d0d0d0d0-0000-4000-8000-0000000000a1", Some("mig_limited")).0, "SUCCESS");
        assert_eq!(create("d0d0d0d0-0000-4000-8000-0000000000a2", Some("mig_free")).0, "SUCCESS");
        let id =
            |schema: &str| one::<String>(&format!("SELECT id::text FROM tenant.find_institution('{schema}')")).unwrap();
        let (limited, free) = (id("mig_limited"), id("mig_free"));
        Spi::run(&format!("SELECT tenant.set_quota('{limited}', '1 MB'); SELECT tenant.refresh_storage('{free}')"))
            .unwrap();
        let registered = |schema: &str| {
            one::<String>(&format!(
                "SELECT table_count || '/' || storage_used || '/' || quota_state FROM tenant.tenant_schemas WHERE schema_name = '{schema}'"
            ))
            .unwrap()
        };
        let measured = |schema: &str| {
            let tables = one::<i64>(&format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'")).unwrap();
            let bytes = one::<i64>(&format!(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                  WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind IN ('r', 'p', 'm', 'S')"
            ))
            .unwrap();
            (tables, bytes)
        };
        let migrate = |schema_id: &str| {
            assert_eq!(
                status_of(&format!("SELECT * FROM tenant.migrate_institution_schema('{schema_id}')")),
                ("SUCCESS".into(), None)
            );
        };
        assert_eq!(
            register(
                1,
                "CREATE TABLE filler AS SELECT g AS id, repeat('x', 200) AS body FROM generate_series(1, 10000) g"
            ),
            ("SUCCESS".into(), None)
        );
        migrate(&limited);
        migrate(&free);
        // Over its 1 MB: recounted, EXCEEDED, and its new table guarded.
        let (tables, bytes) = measured("mig_limited");
        assert!(bytes > 1024 * 1024);
        assert_eq!(registered("mig_limited"), format!("{tables}/{bytes}/EXCEEDED"));
        assert_eq!(
            one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'mig_limited.filler'::regclass AND tgname = 'tc_quota_guard')"
            ),
            Some(true)
        );
        let (tables, bytes) = measured("mig_free");
        assert_eq!(registered("mig_free"), format!("{tables}/{bytes}/OK"));

        // A column added without a rewrite changes no size: the registry is
        // not touched (a figure planted there stays).
        Spi::run("UPDATE tenant.tenant_schemas SET storage_used = 4242 WHERE schema_name = 'mig_free'").unwrap();
        assert_eq!(register(2, "ALTER TABLE filler ADD COLUMN note text"), ("SUCCESS".into(), None));
        migrate(&free);
        assert_eq!(registered("mig_free"), format!("{tables}/4242/OK"));
        // Rows written: recounted.
        assert_eq!(register(3, "UPDATE filler SET note = 'seen' WHERE id <= 5000"), ("SUCCESS".into(), None));
        migrate(&free);
        let (tables, bytes) = measured("mig_free");
        assert_eq!(registered("mig_free"), format!("{tables}/{bytes}/OK"));
    }

    /// Who owns the tables of the schema a function runs in, as the
    /// migration's own statements see it: `lend_a=<owner>,lend_b=<owner>`.
    const OWNERS: &str = "CREATE FUNCTION tenant_template.lend_owners() RETURNS text LANGUAGE sql VOLATILE AS $$
        SELECT string_agg(c.relname || '=' || pg_get_userbyid(c.relowner), ',' ORDER BY c.relname)
          FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ('lend_a', 'lend_b') $$";

    /// A script made of `ALTER TABLE t ...` alone lends the tenant's role
    /// that table only (the template, registered, lends everything); one
    /// that needs more (a foreign key to a table whose REFERENCES the role
    /// lacks) is run again with everything lent; either way everything
    /// goes back to its owner and the tenant matches the template.
    #[pg_test]
    fn a_one_table_migration_lends_that_table_alone() {
        serialize_template_changes();
        Spi::run(&format!(
            "CREATE TABLE tenant_template.lend_a (id int PRIMARY KEY);
             CREATE TABLE tenant_template.lend_b (id int PRIMARY KEY);
             REVOKE ALL ON tenant_template.lend_a, tenant_template.lend_b FROM tenant_template_owner;
             GRANT SELECT ON tenant_template.lend_a, tenant_template.lend_b TO tenant_template_owner;
             {OWNERS}"
        ))
        .unwrap();
        let id = created("d0d0d0d0-0000-4000-8000-0000000000b1", "mig_lend");
        Spi::run("INSERT INTO mig_lend.lend_a VALUES (1); INSERT INTO tenant_template.lend_a VALUES (1)").unwrap();
        // A volatile default: the table is rewritten and the default evaluated
        // for the existing row, by the migration's role.
        assert_eq!(
            register(1, "ALTER TABLE lend_a ADD COLUMN owners text DEFAULT lend_owners()"),
            ("SUCCESS".into(), None)
        );
        assert_eq!(
            one::<String>("SELECT owners FROM tenant_template.lend_a"),
            Some("lend_a=tenant_template_owner,lend_b=tenant_template_owner".into())
        );
        let migrated = format!("SELECT * FROM tenant.migrate_institution_schema('{id}')");
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        let superuser = one::<String>("SELECT current_user::text").unwrap();
        assert_eq!(
            one::<String>("SELECT owners FROM mig_lend.lend_a"),
            Some(format!("lend_a=mig_lend_owner,lend_b={superuser}")),
            "only the altered table was lent"
        );
        // A foreign key to lend_b needs REFERENCES on it, which the role
        // lacks: run again with everything lent.
        assert_eq!(register(2, "ALTER TABLE lend_a ADD COLUMN b_id int REFERENCES lend_b"), ("SUCCESS".into(), None));
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'mig_lend.lend_a'::regclass AND contype = 'f'"
            ),
            Some(1)
        );
        // A column whose sequence is a new object: granted like the template's.
        assert_eq!(register(3, "ALTER TABLE lend_b ADD COLUMN n serial"), ("SUCCESS".into(), None));
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        for (schema, role) in [("tenant_template", "tenant_template_owner"), ("mig_lend", "mig_lend_owner")] {
            let owners = one::<String>(&format!(
                "SELECT string_agg(c.relname || '=' || pg_get_userbyid(c.relowner), ',' ORDER BY c.relname)
                   FROM pg_class c WHERE c.relnamespace = '{schema}'::regnamespace AND c.relname LIKE 'lend%' AND c.relkind IN ('r', 'S')"
            ));
            assert_eq!(
                owners,
                Some(format!("lend_a={superuser},lend_b={superuser},lend_b_n_seq={superuser}")),
                "{schema}: everything went back"
            );
            assert_eq!(
                one::<bool>(&format!("SELECT has_table_privilege('{role}', '{schema}.lend_a', 'UPDATE')")),
                Some(false)
            );
        }
        assert_eq!(
            one::<String>("SELECT relacl::text FROM pg_class WHERE oid = 'mig_lend.lend_b_n_seq'::regclass")
                .map(|acl| acl.replace("mig_lend_owner", "tenant_template_owner")),
            one::<String>("SELECT relacl::text FROM pg_class WHERE oid = 'tenant_template.lend_b_n_seq'::regclass"),
        );
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new(), "no drift from the template");
    }

    /// Tenant code that a one-table migration runs (here the tenant's
    /// `lower(varchar)`, a better match than the built-in for the script's
    /// `USING lower(code)`) runs as the tenant's role: it may not touch a
    /// table the script does not name (not lent: 42501), and when the
    /// migration is run again with everything lent, what it changed there
    /// is refused and rolled back.
    #[pg_test]
    fn tenant_code_run_by_a_one_table_migration_keeps_nothing() {
        serialize_template_changes();
        Spi::run(
            "CREATE TABLE tenant_template.tamper_a (id int PRIMARY KEY, code varchar(10));
             CREATE TABLE tenant_template.tamper_b (id int PRIMARY KEY)",
        )
        .unwrap();
        let id = created("d0d0d0d0-0000-4000-8000-0000000000c1", "mig_tamper");
        Spi::run(
            "INSERT INTO mig_tamper.tamper_a VALUES (1, 'A');
             CREATE FUNCTION mig_tamper.lower(varchar) RETURNS text LANGUAGE plpgsql AS $$
                 BEGIN EXECUTE 'ALTER TABLE tamper_b ADD COLUMN planted int'; RETURN pg_catalog.lower($1::text); END $$;
             ALTER FUNCTION mig_tamper.lower(varchar) OWNER TO mig_tamper_owner",
        )
        .unwrap();
        assert_eq!(
            register(1, "ALTER TABLE tamper_a ALTER COLUMN code TYPE text USING lower(code)"),
            ("SUCCESS".into(), None)
        );
        let message = one::<String>(&format!(
            "SELECT status || ' ' || sqlstate || ' ' || message FROM tenant.migrate_institution_schema('{id}')"
        ))
        .unwrap();
        assert!(message.starts_with("ERROR 42501"), "{message}");
        assert!(message.contains("changed unlike the template") && message.contains("tamper_b"), "{message}");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_attribute WHERE attrelid = 'mig_tamper.tamper_b'::regclass AND attname = 'planted'"),
            Some(0)
        );
        assert_eq!(
            one::<String>("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'mig_tamper.tamper_a'::regclass AND attname = 'code'"),
            Some("character varying(10)".into())
        );
        assert_eq!(version_of("mig_tamper"), 0);
        let superuser = one::<String>("SELECT current_user::text").unwrap();
        assert_eq!(
            one::<String>("SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname IN ('tamper_a', 'tamper_b') AND relnamespace = 'mig_tamper'::regnamespace"),
            Some(superuser)
        );
    }

    /// Tenant code that a one-table migration runs may not grant privileges
    /// on a table lent to the tenant's role: such a grant would outlive the
    /// lending. The migration is refused, not rerun with everything lent.
    #[pg_test]
    fn tenant_code_cannot_grant_on_a_table_lent_to_a_migration() {
        serialize_template_changes();
        Spi::run(
            "CREATE TABLE tenant_template.grant_a (id int PRIMARY KEY, code varchar(10));
             CREATE TABLE tenant_template.grant_c (id int PRIMARY KEY)",
        )
        .unwrap();
        let id = created("d0d0d0d0-0000-4000-8000-0000000000c2", "mig_granted");
        Spi::run(
            "INSERT INTO mig_granted.grant_a VALUES (1, 'A');
             CREATE FUNCTION mig_granted.lower(varchar) RETURNS text LANGUAGE plpgsql AS $$
                 BEGIN EXECUTE 'GRANT DELETE ON grant_c TO PUBLIC'; RETURN pg_catalog.lower($1::text); END $$;
             ALTER FUNCTION mig_granted.lower(varchar) OWNER TO mig_granted_owner",
        )
        .unwrap();
        let script =
            "ALTER TABLE grant_c ADD COLUMN n int; ALTER TABLE grant_a ALTER COLUMN code TYPE text USING lower(code)";
        assert_eq!(register(1, script), ("SUCCESS".into(), None));
        let message = one::<String>(&format!(
            "SELECT status || ' ' || sqlstate || ' ' || message FROM tenant.migrate_institution_schema('{id}')"
        ))
        .unwrap();
        assert!(message.starts_with("ERROR 42501"), "{message}");
        assert!(message.contains("were granted privileges while it was migrated"), "{message}");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_class c, aclexplode(c.relacl) x WHERE c.oid = 'mig_granted.grant_c'::regclass AND x.grantee = 0"),
            Some(0)
        );
        assert_eq!(version_of("mig_granted"), 0);
    }
    /// Plain column additions (a pg_catalog type, a literal default) run as
    /// the extension's owner without lending: the tenant's code (its own
    /// `text` domain, a trigger it may put on the table) never runs, the table
    /// stays the superuser's, and the tenant matches the template. A column
    /// of a type the tenant owns, or a tenant near its quota, goes the
    /// general way, where the tenant's code runs as its role.
    #[pg_test]
    fn a_plain_column_migration_runs_no_tenant_code_and_lends_nothing() {
        serialize_template_changes();
        Spi::run(
            "CREATE TABLE tenant_template.plain_a (id int PRIMARY KEY);
             CREATE DOMAIN tenant_template.plain_label AS text;
             ALTER DOMAIN tenant_template.plain_label OWNER TO tenant_template_owner",
        )
        .unwrap();
        let id = created("d0d0d0d0-0000-4000-8000-0000000000d1", "mig_plain");
        Spi::run(
            "INSERT INTO mig_plain.plain_a VALUES (1);
             SET LOCAL ROLE mig_plain_owner;
             CREATE TABLE mig_plain.seen (who text);
             CREATE FUNCTION mig_plain.spy(text) RETURNS boolean LANGUAGE plpgsql AS $$
                 BEGIN INSERT INTO mig_plain.seen VALUES (current_user); RETURN true; END $$;
             CREATE DOMAIN mig_plain.text AS pg_catalog.text CHECK (mig_plain.spy(VALUE));
             CREATE DOMAIN mig_plain.numeric AS pg_catalog.numeric CHECK (mig_plain.spy(VALUE::pg_catalog.text));
             CREATE FUNCTION mig_plain.spy_row() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN PERFORM mig_plain.spy(TG_OP); RETURN NULL; END $$;
             CREATE TRIGGER spy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mig_plain.plain_a
                 FOR EACH STATEMENT EXECUTE FUNCTION mig_plain.spy_row();
             ALTER DOMAIN mig_plain.plain_label ADD CONSTRAINT spy CHECK (mig_plain.spy(VALUE));
             RESET ROLE",
        )
        .unwrap();
        let migrated = format!("SELECT * FROM tenant.migrate_institution_schema('{id}')");
        let plain_path = || {
            one::<bool>(&format!(
                "SELECT (metadata ? 'plain_columns') FROM tenant.schema_operations
                  WHERE schema_id = '{id}' AND operation_type = 'MIGRATE' ORDER BY id DESC LIMIT 1"
            ))
        };
        let script = "ALTER TABLE plain_a ADD COLUMN note text NOT NULL DEFAULT 'none', ADD COLUMN price numeric(10, 2) DEFAULT 5;
                      ALTER TABLE plain_a ADD COLUMN IF NOT EXISTS flags integer[]";
        assert_eq!(register(1, script), ("SUCCESS".into(), None));
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        assert_eq!(plain_path(), Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM mig_plain.seen"), Some(0), "no tenant code ran");
        assert_eq!(one::<String>("SELECT note || ' ' || price FROM mig_plain.plain_a"), Some("none 5.00".into()));
        assert_eq!(
            one::<String>(
                "SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = 'mig_plain.plain_a'::regclass AND attnum > 1"
            ),
            Some("text, numeric(10,2), integer[]".into()),
            "the built-in types, not the tenant's domains"
        );
        assert_eq!(
            one::<bool>("SELECT relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_class WHERE oid = 'mig_plain.plain_a'::regclass"),
            Some(true)
        );
        assert_eq!(version_of("mig_plain"), 1);

        // A column of a type the tenant owns: lent, and the domain's check
        // (the tenant's code) runs as the tenant's role.
        assert_eq!(
            register(2, "ALTER TABLE plain_a ADD COLUMN label plain_label DEFAULT 'x'"),
            ("SUCCESS".into(), None)
        );
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        assert_eq!(plain_path(), Some(false));
        assert_eq!(
            one::<String>("SELECT string_agg(DISTINCT who, ',') FROM mig_plain.seen"),
            Some("mig_plain_owner".into())
        );

        // A tenant past its warning level: the general way, so that the quota
        // guard sees the statement as before.
        Spi::run("UPDATE tenant.tenant_schemas SET quota_state = 'WARNING' WHERE schema_name = 'mig_plain'").unwrap();
        assert_eq!(register(3, "ALTER TABLE plain_a ADD COLUMN later text"), ("SUCCESS".into(), None));
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        assert_eq!(plain_path(), Some(false));
        Spi::run("UPDATE tenant.tenant_schemas SET quota_state = 'OK' WHERE schema_name = 'mig_plain'").unwrap();
        Spi::run("DROP TRIGGER spy ON mig_plain.plain_a; DROP TABLE mig_plain.seen CASCADE; DROP FUNCTION mig_plain.spy_row(); DROP DOMAIN mig_plain.text, mig_plain.numeric; ALTER DOMAIN mig_plain.plain_label DROP CONSTRAINT spy; DROP FUNCTION mig_plain.spy(text)").unwrap();
        Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new(), "no drift from the template");
    }

    /// A privilege the template's owner role revokes from itself in a
    /// migration, on an object it owns, is revoked from each migrated
    /// tenant's role too, as a new copy has it.
    #[pg_test]
    fn a_privilege_the_owner_revokes_from_itself_in_a_migration_reaches_every_tenant() {
        serialize_template_changes();
        Spi::run("CREATE TABLE tenant_template.ledger (id int); ALTER TABLE tenant_template.ledger OWNER TO tenant_template_owner")
            .unwrap();
        let id = created("d0d0d0d0-0000-4000-8000-000000000041", "mig_acl");
        let script = "REVOKE DELETE, TRUNCATE ON ledger FROM tenant_template_owner";
        assert_eq!(register(1, script), ("SUCCESS".into(), None));
        let migrated = format!("SELECT * FROM tenant.migrate_institution_schema('{id}')");
        assert_eq!(status_of(&migrated), ("SUCCESS".into(), None));
        created("d0d0d0d0-0000-4000-8000-000000000042", "mig_acl_new");
        let acls = |schema: &str| {
            one::<String>(&format!(
                "SELECT replace(array_to_string(relacl, ','), '{schema}_owner', 'ROLE')
                   FROM pg_class WHERE oid = '{schema}.ledger'::regclass"
            ))
        };
        assert_eq!(acls("mig_acl_new").as_deref(), Some("ROLE=arwxt/ROLE"));
        assert_eq!(acls("mig_acl"), acls("mig_acl_new"));
        assert_eq!(one::<bool>("SELECT has_table_privilege('mig_acl_owner', 'mig_acl.ledger', 'DELETE')"), Some(false));
        Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new(), "no drift from the template");
    }

    /// The template's objects for the lent-grants tests: `lent_ro`, a table
    /// of the extension's owner that the tenant may only read, `lent_fn`, a
    /// function of its that PUBLIC may not execute (its argument of a domain
    /// of the template's, so that it is named as the template's), and `lent_own`, a table
    /// of the tenant's role with one row.
    fn lent_grant_template() {
        Spi::run(
            "CREATE TABLE tenant_template.lent_ro (id int PRIMARY KEY);
             REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON tenant_template.lent_ro FROM tenant_template_owner;
             CREATE DOMAIN tenant_template.lent_code AS text;
             CREATE FUNCTION tenant_template.lent_fn(tenant_template.lent_code) RETURNS int LANGUAGE sql AS 'SELECT 1';
             REVOKE EXECUTE ON FUNCTION tenant_template.lent_fn(tenant_template.lent_code) FROM PUBLIC;
             CREATE TABLE tenant_template.lent_own (id int PRIMARY KEY, n int);
             ALTER TABLE tenant_template.lent_own OWNER TO tenant_template_owner;
             INSERT INTO tenant_template.lent_own VALUES (1, 0)",
        )
        .unwrap();
    }

    fn privilege(role: &str, check: &str, object: &str, privilege: &str) -> bool {
        one::<bool>(&format!("SELECT has_{check}_privilege('{role}', '{object}', '{privilege}')")).unwrap()
    }

    /// Tenant code that a migration (not a one-table ALTER: everything is
    /// lent) sets off may not grant privileges on the extension's objects
    /// lent to the tenant's role, nor on what the script creates for the
    /// extension's owner: the grants would outlive the hand-over.
    #[pg_test]
    fn tenant_code_cannot_grant_on_objects_lent_to_a_migration() {
        serialize_template_changes();
        lent_grant_template();
        let id = created("d0d0d0d0-0000-4000-8000-0000000000c3", "mig_lentgrant");
        Spi::run(
            "INSERT INTO mig_lentgrant.lent_own VALUES (1, 0);
             CREATE FUNCTION mig_lentgrant.grab() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN EXECUTE 'GRANT UPDATE ON lent_ro TO PUBLIC';
                       EXECUTE 'GRANT EXECUTE ON FUNCTION lent_fn(lent_code) TO PUBLIC';
                       EXECUTE 'GRANT INSERT ON lent_new TO PUBLIC';
                       RETURN NEW; END $$;
             ALTER FUNCTION mig_lentgrant.grab() OWNER TO mig_lentgrant_owner;
             CREATE TRIGGER grab BEFORE UPDATE ON mig_lentgrant.lent_own FOR EACH ROW EXECUTE FUNCTION mig_lentgrant.grab()",
        )
        .unwrap();
        assert_eq!(
            register(1, "CREATE TABLE lent_new (id int); UPDATE lent_own SET n = n + 1"),
            ("SUCCESS".into(), None)
        );
        let message = one::<String>(&format!(
            "SELECT status || ' ' || sqlstate || ' ' || message FROM tenant.migrate_institution_schema('{id}')"
        ))
        .unwrap();
        assert!(message.starts_with("ERROR 42501"), "{message}");
        assert!(
            message.contains("objects of schema mig_lentgrant not owned by its role were granted privileges"),
            "{message}"
        );
        assert!(message.contains("UPDATE to PUBLIC on table mig_lentgrant.lent_ro"), "{message}");
        assert!(
            message.contains("EXECUTE to PUBLIC on function mig_lentgrant.lent_fn(mig_lentgrant.lent_code)"),
            "{message}"
        );
        // A table the script created, given to the extension's owner afterwards.
        assert!(message.contains("INSERT to PUBLIC on table mig_lentgrant.lent_new"), "{message}");
        assert!(!privilege("mig_lentgrant_owner", "table", "mig_lentgrant.lent_ro", "UPDATE"));
        assert!(!privilege("public", "function", "mig_lentgrant.lent_fn(mig_lentgrant.lent_code)", "EXECUTE"));
        assert_eq!(
            one::<String>("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'mig_lentgrant.lent_ro'::regclass"),
            one::<String>("SELECT current_user::text")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'mig_lentgrant' AND tablename = 'lent_new'"),
            Some(0)
        );
        assert_eq!(one::<i32>("SELECT n FROM mig_lentgrant.lent_own"), Some(0));
        assert_eq!(version_of("mig_lentgrant"), 0);
        assert_eq!(
            one::<String>(&format!(
                "SELECT status || ' ' || error_sqlstate FROM tenant.schema_operations
                  WHERE operation_type = 'MIGRATE' AND schema_id = '{id}' ORDER BY id DESC LIMIT 1"
            )),
            Some("FAILED 42501".into())
        );
    }

    /// A registered script's own GRANT on the extension's objects (which ran
    /// on the template first) still applies to each tenant, to another role
    /// as to PUBLIC. A grant to the template's role on an object lent to it
    /// folds into the lent ownership and is gone with it in the template:
    /// the tenants' migrations pass and their roles get no more either.
    #[pg_test]
    fn a_migrations_own_grants_on_lent_objects_apply_to_tenants() {
        serialize_template_changes();
        lent_grant_template();
        let id = created("d0d0d0d0-0000-4000-8000-0000000000c4", "mig_owngrant");
        assert!(!privilege("mig_owngrant_owner", "table", "mig_owngrant.lent_ro", "UPDATE"));
        Spi::run("CREATE ROLE lent_reader NOLOGIN").unwrap();
        let script = "UPDATE lent_own SET n = n + 1;
                      GRANT SELECT ON lent_ro TO lent_reader;
                      GRANT UPDATE ON lent_ro TO tenant_template_owner;
                      GRANT EXECUTE ON FUNCTION lent_fn(lent_code) TO PUBLIC";
        assert_eq!(register(1, script), ("SUCCESS".into(), None));
        assert!(!privilege("tenant_template_owner", "table", "tenant_template.lent_ro", "UPDATE"));
        let message = one::<String>(&format!(
            "SELECT status || ' ' || coalesce(message, '') FROM tenant.migrate_institution_schema('{id}')"
        ))
        .unwrap();
        assert!(message.starts_with("SUCCESS"), "{message}");
        assert!(privilege("lent_reader", "table", "mig_owngrant.lent_ro", "SELECT"));
        assert!(privilege("public", "function", "mig_owngrant.lent_fn(mig_owngrant.lent_code)", "EXECUTE"));
        assert!(privilege("mig_owngrant_owner", "table", "mig_owngrant.lent_ro", "SELECT"));
        assert!(!privilege("mig_owngrant_owner", "table", "mig_owngrant.lent_ro", "UPDATE"));
        assert!(!privilege("tenant_template_owner", "table", "mig_owngrant.lent_ro", "UPDATE"));
        assert_eq!(version_of("mig_owngrant"), 1);
    }
}
