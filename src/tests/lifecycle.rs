//! `#[pg_test]` unit tests: each runs in one superuser transaction that is
//! rolled back. Roles, concurrency and pg_dump are tested in `pgrx-tests/`.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    use crate::core::errors::sqlstate_of;
    use crate::core::name::{TenantName, MAX_SCHEMA_NAME_BYTES};
    use pgrx::prelude::*;

    /// `#[pg_test]`s run side by side in one database. A test that creates
    /// a tenant (the template lock, shared) and then registers a migration
    /// (the same lock, exclusive) would deadlock with another doing the same:
    /// such tests take the lock exclusively first, and so run one at a time.
    pub(crate) fn serialize_template_changes() {
        crate::core::locks::template_exclusive().unwrap();
    }

    pub(crate) fn create(institution: &str, schema: Option<&str>) -> (String, String, Option<String>, Option<String>) {
        let name = match schema {
            Some(s) => format!("'{s}'"),
            None => "NULL".into(),
        };
        status_row(&format!(
            "SELECT status, message, schema_id::text, sqlstate
           FROM tenant.create_institution_schema('{institution}'::uuid, {name})"
        ))
    }

    /// The four columns of a status row: status, message, an id as text, sqlstate.
    pub(crate) fn status_row(sql: &str) -> (String, String, Option<String>, Option<String>) {
        Spi::connect_mut(|c| {
            let row = c.update(sql, None, &[]).unwrap().first();
            (
                row.get::<String>(1).unwrap().unwrap(),
                row.get::<String>(2).unwrap().unwrap(),
                row.get::<String>(3).unwrap(),
                row.get::<String>(4).unwrap(),
            )
        })
    }

    pub(crate) fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap()
    }

    #[pg_test]
    fn sqlstates_are_packed_like_postgres() {
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA), "42P06");
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_NAME_TOO_LONG), "42622");
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE), "55P03");
    }

    #[pg_test]
    fn names_follow_the_rules() {
        let code = |name: Option<&str>| TenantName::parse(name).map(|_| ()).map_err(|e| e.sqlstate());
        assert_eq!(code(Some("acme")), Ok(()));
        assert_eq!(code(Some("a1_b2")), Ok(()));
        assert_eq!(code(None), Err("22004".into()));
        assert_eq!(code(Some("")), Err("42602".into()));
        assert_eq!(code(Some("Acme")), Err("42602".into()));
        assert_eq!(code(Some("1acme")), Err("42602".into()));
        assert_eq!(code(Some("_acme")), Err("42602".into()));
        assert_eq!(code(Some("ac-me")), Err("42602".into()));
        assert_eq!(code(Some("acmé")), Err("42602".into()));
        assert_eq!(code(Some("ac me")), Err("42602".into()));
        assert_eq!(code(Some("a\"; drop table x; --")), Err("42602".into()));
        for reserved in ["public", "information_schema", "tenant", "tenant_template", "pg_acme", "tc_backup_x"] {
            assert_eq!(code(Some(reserved)), Err("42939".into()), "{reserved}");
        }
        let longest = "a".repeat(MAX_SCHEMA_NAME_BYTES);
        assert_eq!(code(Some(&longest)), Ok(()));
        assert_eq!(code(Some(&format!("{longest}b"))), Err("42622".into()));
        // The derived role name must fit without truncation too.
        assert_eq!(TenantName::parse(Some(&longest)).unwrap().role().as_str().len(), 63);
    }

    #[pg_test]
    fn default_name_is_inst_and_the_institution_id() {
        let id = uuid::Uuid::parse_str("6f1c2a3b-0000-4000-8000-00000000abcd").unwrap();
        assert_eq!(TenantName::default_for(&id).as_str(), "inst_6f1c2a3b_0000_4000_8000_00000000abcd");
    }

    #[pg_test]
    fn create_makes_schema_role_registry_row_and_log() {
        let inst = "11111111-1111-4111-8111-111111111111";
        let (status, message, schema_id, sqlstate) = create(inst, None);
        assert_eq!(status, "SUCCESS", "{message}");
        assert_eq!(sqlstate, None);
        let schema = "inst_11111111_1111_4111_8111_111111111111";
        let id = schema_id.unwrap();
        assert_eq!(
            one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{schema}')")),
            Some(true)
        );
        assert_eq!(
            one::<bool>(&format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{schema}_owner'")),
            Some(false)
        );
        assert_eq!(
            one::<bool>(&format!("SELECT has_schema_privilege('{schema}_owner', '{schema}', 'USAGE,CREATE')")),
            Some(true)
        );
        assert_eq!(
            one::<String>(&format!(
            "SELECT status || '/' || owner_role || '/' || institution_id FROM tenant.tenant_schemas WHERE id = '{id}'"
        )),
            Some(format!("ACTIVE/{schema}_owner/{inst}"))
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT operation_type || '/' || status || '/' || (metadata->>'schema_name')
               FROM tenant.schema_operations WHERE schema_id = '{id}'"
            )),
            Some(format!("CREATE/COMPLETED/{schema}"))
        );
    }

    #[pg_test]
    fn failed_create_leaves_nothing_but_a_failed_log_row() {
        let (status, _, _, _) = create("22222222-2222-4222-8222-222222222222", Some("acme"));
        assert_eq!(status, "SUCCESS");
        // Same name for another institution: refused, nothing new created.
        let (status, message, schema_id, sqlstate) = create("33333333-3333-4333-8333-333333333333", Some("acme"));
        assert_eq!((status.as_str(), sqlstate.as_deref(), schema_id), ("ERROR", Some("42P06"), None));
        assert!(message.contains("acme") && message.contains("42P06"), "{message}");
        // Same institution again under another name: refused.
        let (status, message, _, sqlstate) = create("22222222-2222-4222-8222-222222222222", Some("acme2"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("42710")), "{message}");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname = 'acme2'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_roles WHERE rolname = 'acme2_owner'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.tenant_schemas"), Some(1));
        assert_eq!(
        one::<String>(
            "SELECT string_agg(error_sqlstate, ',' ORDER BY id) FROM tenant.schema_operations WHERE status = 'FAILED'"
        ),
        Some("42P06,42710".into())
    );
    }

    #[pg_test]
    fn a_failure_half_way_rolls_back_the_role_and_schema() {
        // The role name is free but the schema already exists outside the registry.
        Spi::run("CREATE SCHEMA squatter").unwrap();
        let (status, _, _, sqlstate) = create("44444444-4444-4444-8444-444444444444", Some("squatter"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("42P06")));
        // An existing role is never adopted.
        Spi::run("CREATE ROLE taken_owner NOLOGIN").unwrap();
        let (status, _, _, sqlstate) = create("44444444-4444-4444-8444-444444444444", Some("taken"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("42710")));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname = 'taken'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.tenant_schemas"), Some(0));
    }

    #[pg_test]
    fn bad_arguments_are_errors_not_nulls() {
        let failed = |sql: &str| {
            Spi::connect_mut(|c| {
                let row = c.update(sql, None, &[]).unwrap().first();
                (row.get::<String>(1).unwrap().unwrap(), row.get::<String>(4).unwrap())
            })
        };
        assert_eq!(
            failed("SELECT status, message, schema_id, sqlstate FROM tenant.create_institution_schema(NULL)"),
            ("ERROR".into(), Some("22004".into()))
        );
        assert_eq!(
        failed("SELECT status, message, schema_id, sqlstate FROM tenant.create_institution_schema(gen_random_uuid(), 'Bad Name')"),
        ("ERROR".into(), Some("42602".into()))
    );
        assert_eq!(
            failed("SELECT status, message, backup_schema, sqlstate FROM tenant.drop_institution_schema(NULL)"),
            ("ERROR".into(), Some("22004".into()))
        );
        assert_eq!(
        failed("SELECT status, message, backup_schema, sqlstate FROM tenant.drop_institution_schema(gen_random_uuid())"),
        ("ERROR".into(), Some("42704".into()))
    );
    }

    #[pg_test]
    fn drop_detaches_into_a_backup_and_keeps_the_registry_row() {
        let (_, _, id, _) = create("55555555-5555-4555-8555-555555555555", Some("dropme"));
        let id = id.unwrap();
        Spi::run(
            "SET LOCAL ROLE dropme_owner;
         CREATE TABLE dropme.t (id int GENERATED ALWAYS AS IDENTITY, v text);
         INSERT INTO dropme.t (v) VALUES ('a'), ('b');
         RESET ROLE",
        )
        .unwrap();
        let (status, backup) = Spi::connect_mut(|c| {
            let row = c
                .update(&format!("SELECT status, backup_schema FROM tenant.drop_institution_schema('{id}')"), None, &[])
                .unwrap()
                .first();
            (row.get::<String>(1).unwrap().unwrap(), row.get::<String>(2).unwrap().unwrap())
        });
        assert_eq!(status, "SUCCESS");
        assert!(backup.starts_with("tc_backup_") && backup.len() <= 63, "{backup}");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname = 'dropme'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_roles WHERE rolname = 'dropme_owner'"), Some(0));
        // The role went with the backup, renamed after it, and reaches nothing.
        assert_eq!(
            one::<String>(&format!("SELECT tableowner::text FROM pg_tables WHERE schemaname = '{backup}'")),
            Some(format!("{backup}_owner"))
        );
        assert_eq!(
            one::<bool>(&format!("SELECT has_schema_privilege('{backup}_owner', '{backup}', 'USAGE')")),
            Some(false)
        );
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM {backup}.t")), Some(2));
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some("DROPPED".into())
        );
        assert_eq!(
            one::<bool>(&format!("SELECT last_backup IS NOT NULL FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some(true)
        );
        assert_eq!(
            one::<String>(&format!("SELECT source_schema FROM tenant.schema_backups WHERE schema_id = '{id}'")),
            Some("dropme".into())
        );
        // Dropping twice is refused; the name can be used again by a new tenant.
        assert_eq!(
            one::<String>(&format!("SELECT sqlstate FROM tenant.drop_institution_schema('{id}')")),
            Some("55000".into())
        );
        assert_eq!(create("66666666-6666-4666-8666-666666666666", Some("dropme")).0, "SUCCESS");
    }

    #[pg_test]
    fn status_changes_grant_and_revoke_the_schema() {
        let (_, _, id, _) = create("77777777-7777-4777-8777-777777777777", Some("stat"));
        let id = id.unwrap();
        let usable = || one::<bool>("SELECT has_schema_privilege('stat_owner', 'stat', 'USAGE')").unwrap();
        let status = |sql: String| one::<String>(&sql).unwrap();
        assert!(usable());
        assert_eq!(status(format!("SELECT status FROM tenant.suspend_institution('{id}', 'unpaid')")), "SUCCESS");
        assert!(!usable());
        assert_eq!(status(format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")), "SUSPENDED");
        assert_eq!(status(format!("SELECT status FROM tenant.start_maintenance('{id}')")), "SUCCESS");
        assert!(!usable());
        assert_eq!(status(format!("SELECT status FROM tenant.activate_institution('{id}')")), "SUCCESS");
        assert!(usable());
        assert_eq!(status(format!("SELECT sqlstate FROM tenant.set_institution_status('{id}', 'bogus')")), "22023");
        for by_hand in ["spare", "DROPPED"] {
            assert_eq!(
                status(format!("SELECT sqlstate FROM tenant.set_institution_status('{id}', '{by_hand}')")),
                "22023"
            );
        }
        assert_eq!(
            status(format!(
                "SELECT string_agg(metadata->>'to', ',' ORDER BY id) FROM tenant.schema_operations
              WHERE schema_id = '{id}' AND operation_type = 'STATUS_CHANGE' AND status = 'COMPLETED'"
            )),
            "SUSPENDED,MAINTENANCE,ACTIVE"
        );
    }

    #[pg_test]
    fn lookups_find_by_any_identifier() {
        let inst = "88888888-8888-4888-8888-888888888888";
        let (_, _, id, _) = create(inst, Some("findme"));
        let id = id.unwrap();
        for key in [id.as_str(), inst, "findme", &inst.to_uppercase()] {
            assert_eq!(
                one::<String>(&format!("SELECT schema_name FROM tenant.find_institution('{key}')")),
                Some("findme".into()),
                "{key}"
            );
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.find_institution('nobody')"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.list_institutions('active')"), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.list_institutions('SUSPENDED')"), Some(0));
    }

    /// registry::storage sizes the files named in the catalogs instead of
    /// opening every relation: it must count what pg_total_relation_size
    /// counts, for every kind of relation a schema holds.
    #[pg_test]
    fn storage_measure_counts_what_pg_total_relation_size_counts() {
        let (_, _, id, _) = create("99999999-9999-4999-8999-999999999998", Some("files"));
        assert!(id.is_some());
        Spi::run(
            "CREATE TABLE files.docs (id int PRIMARY KEY, body text);
             ALTER TABLE files.docs ALTER body SET STORAGE EXTERNAL;
             INSERT INTO files.docs SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 300) g;
             CREATE INDEX ON files.docs (left(body, 10));
             CREATE UNLOGGED TABLE files.scratch (n int PRIMARY KEY);
             INSERT INTO files.scratch SELECT generate_series(1, 1000);
             CREATE TABLE files.parts (at date, n int) PARTITION BY RANGE (at);
             CREATE TABLE files.parts_2026 PARTITION OF files.parts FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             CREATE INDEX ON files.parts (n);
             INSERT INTO files.parts SELECT '2026-03-01', g FROM generate_series(1, 500) g;
             CREATE MATERIALIZED VIEW files.summary AS SELECT id, length(body) AS size FROM files.docs;
             CREATE UNIQUE INDEX ON files.summary (id);
             CREATE SEQUENCE files.counter;",
        )
        .unwrap();
        let expected = one::<i64>(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
              WHERE c.relnamespace = 'files'::regnamespace AND c.relkind IN ('r', 'p', 'm', 'S')",
        )
        .unwrap();
        let tables = one::<i64>(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'files'::regnamespace AND relkind IN ('r', 'p')",
        );
        let usage = crate::registry::storage::measure("files").unwrap();
        assert_eq!(usage.bytes, expected);
        assert_eq!(Some(i64::from(usage.tables)), tables);
        // The init fork of the unlogged table's key (a B-tree's holds its
        // metapage) and the TOAST table are in it.
        let init = one::<i64>("SELECT pg_relation_size('files.scratch_pkey', 'init')").unwrap();
        let toast =
            one::<i64>("SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'files.docs'::regclass")
                .unwrap();
        assert!(init > 0 && toast > 300 * 6_000, "init fork {init}, TOAST {toast}");
    }

    #[pg_test]
    fn storage_refresh_counts_tables_and_toast() {
        let (_, _, id, _) = create("99999999-9999-4999-8999-999999999999", Some("sized"));
        let id = id.unwrap();
        Spi::run("CREATE TABLE sized.docs (id int PRIMARY KEY, body text)").unwrap();
        Spi::run("ALTER TABLE sized.docs ALTER body SET STORAGE EXTERNAL").unwrap();
        Spi::run("INSERT INTO sized.docs SELECT g, repeat(md5(g::text), 2000) FROM generate_series(1, 50) g").unwrap();
        let bytes = one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        let expected = one::<i64>("SELECT pg_total_relation_size('sized.docs')").unwrap();
        assert_eq!(bytes, expected);
        assert!(bytes > 50 * 64_000, "TOAST must be counted: {bytes}");
        assert_eq!(one::<i32>(&format!("SELECT table_count FROM tenant.tenant_schemas WHERE id = '{id}'")), Some(1));
        // A dropped tenant is not recounted.
        Spi::run(&format!("SELECT * FROM tenant.drop_institution_schema('{id}')")).unwrap();
        let refused = crate::core::subxact::atomically(|| {
            crate::core::db::run(&format!("SELECT tenant.refresh_storage('{id}')"), &[])
        });
        assert_eq!(refused.map_err(|e| e.sqlstate()), Err("55000".to_string()));
    }

    #[pg_test]
    fn institutions_table_setting_requires_the_institution() {
        Spi::run("CREATE TABLE public.institutions (id uuid PRIMARY KEY)").unwrap();
        Spi::run("INSERT INTO public.institutions VALUES ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')").unwrap();
        Spi::run("SET LOCAL tenant_control.institutions_table = 'public.institutions'").unwrap();
        let (status, _, _, sqlstate) = create("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", None);
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("23503")));
        assert_eq!(create("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", None).0, "SUCCESS");
    }

    #[pg_test]
    fn functions_are_pinned_and_not_public() {
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'tenant'::regnamespace
               AND p.prosecdef AND NOT ('search_path=pg_catalog, pg_temp' = ANY (coalesce(p.proconfig, '{}')))"
            ),
            Some(0)
        );
        assert_eq!(
            one::<String>(
                "SELECT string_agg(p.proname, ',') FROM pg_proc p WHERE p.pronamespace = 'tenant'::regnamespace
               AND has_function_privilege('public', p.oid, 'EXECUTE')"
            ),
            Some("current_institution".to_string())
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'tenant'::regnamespace AND p.prosecdef"),
            Some(64)
        );
        // The event trigger function runs as its caller (it switches to its
        // owner, search_path pinned, only to read the registry or call the checks).
        assert_eq!(
            one::<bool>("SELECT p.prosecdef FROM pg_proc p WHERE p.oid = 'tenant.ddl_event_dispatch()'::regprocedure"),
            Some(false)
        );
    }

    #[pg_test]
    fn set_context_points_the_transaction_at_one_tenant() {
        let (_, _, id, _) = create("abababab-0000-4000-8000-000000000001", Some("ctx_a"));
        let id = id.unwrap();
        let schema = one::<String>("SELECT tenant.set_context('abababab-0000-4000-8000-000000000001')");
        assert_eq!(schema, Some("ctx_a".into()));
        assert_eq!(one::<String>("SELECT current_setting('search_path')"), Some("ctx_a, public".into()));
        assert_eq!(one::<String>("SELECT current_user::text"), Some("ctx_a_owner".into()));
        assert_eq!(
            one::<String>("SELECT current_setting('tenant_control.institution_id')"),
            Some("abababab-0000-4000-8000-000000000001".into())
        );
        Spi::run("RESET ROLE").unwrap();
        let refused = |institution: &str| {
            crate::core::subxact::atomically(|| {
                crate::core::db::run(&format!("SELECT tenant.set_context({institution})"), &[])
            })
            .map_err(|e| e.sqlstate())
        };
        assert_eq!(refused("NULL"), Err("22004".into()));
        assert_eq!(refused("'abababab-0000-4000-8000-00000000ffff'"), Err("42704".into()));
        Spi::run(&format!("SELECT * FROM tenant.suspend_institution('{id}')")).unwrap();
        assert_eq!(refused("'abababab-0000-4000-8000-000000000001'"), Err("55000".into()));
    }

    #[pg_test]
    fn quotas_take_sizes_and_refuse_nonsense() {
        let (_, _, id, _) = create("cdcdcdcd-0000-4000-8000-000000000001", Some("quota_a"));
        let id = id.unwrap();
        let set = |quota: &str| {
            Spi::connect_mut(|c| {
                let row =
                    c.update(&format!("SELECT * FROM tenant.set_quota('{id}', {quota})"), None, &[]).unwrap().first();
                (row.get::<i64>(3).unwrap(), row.get::<String>(4).unwrap())
            })
        };
        assert_eq!(set("'5 GB'"), (Some(5 * 1024 * 1024 * 1024), None));
        assert_eq!(set("'750MB'"), (Some(750 * 1024 * 1024), None));
        assert_eq!(set("'1048576'"), (Some(1048576), None));
        assert_eq!(
            one::<i64>(&format!("SELECT quota_limit FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some(1048576)
        );
        for nonsense in ["'0'", "'-1 GB'", "'lots'", "'99999999999 PB'", "''"] {
            assert_eq!(set(nonsense), (None, Some("22023".into())), "{nonsense}");
        }
        // The refused values left the limit as it was; NULL removes it.
        assert_eq!(
            one::<i64>(&format!("SELECT quota_limit FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some(1048576)
        );
        assert_eq!(set("NULL"), (None, None));
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM tenant.tenant_schemas WHERE id = '{id}' AND quota_limit IS NULL"
            )),
            Some(1)
        );
        assert_eq!(
        one::<i64>("SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'QUOTA_SET' AND status = 'FAILED' AND error_sqlstate = '22023'"),
        Some(5)
    );
    }
}
