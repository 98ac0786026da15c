//! The purge job: accounts soft-deleted longer than `users.purge_after_days` go, once each.

use sqlx::PgPool;
use users_service::service::lifecycle;

use crate::helpers::TestApp;

async fn soft_delete_days_ago(app: &TestApp, id: &str, days: i32) {
    sqlx::query(
        "update users set status = 'deleted', deleted_at = now() - make_interval(days => $2) where id = $1::uuid",
    )
    .bind(id)
    .bind(days)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[sqlx::test]
async fn the_purge_deletes_only_accounts_deleted_long_enough_ago(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let old = app.signed_in("old@example.com").await;
    let recent = app.sign_up("recent@example.com").await;
    let active = app.sign_up("active@example.com").await;
    soft_delete_days_ago(&app, &old.user_id, 31).await;
    soft_delete_days_ago(&app, &recent, 29).await;
    assert_eq!(lifecycle::purge_expired(&app.state).await.unwrap(), 1);
    assert_eq!(
        app.scalar_i64(
            "select count(*) from users where id = $1::uuid",
            &old.user_id
        )
        .await,
        0
    );
    assert_eq!(
        app.scalar_i64(
            "select count(*) from sessions where user_id = $1::uuid",
            &old.user_id
        )
        .await,
        0
    );
    for kept in [&recent, &active] {
        assert_eq!(
            app.scalar_i64("select count(*) from users where id = $1::uuid", kept)
                .await,
            1
        );
    }
    let actor: String =
        sqlx::query_scalar("select actor from audit_log where action = 'user.permanent_delete'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(actor, "system");
}

#[sqlx::test]
async fn concurrent_purges_delete_each_account_once(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("users.purge_after_days", 1))).await;
    for i in 0..150 {
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "insert into users (id, email, first_name, role, status, deleted_at)
             values ($1, $2, 'P', 'readonly', 'deleted', now() - interval '2 days')",
        )
        .bind(id)
        .bind(format!("gone{i}@example.com"))
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let second = TestApp::new(app.pool.clone()).await;
    let (a, b) = tokio::join!(
        lifecycle::purge_expired(&app.state),
        lifecycle::purge_expired(&second.state)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 150);
    assert_eq!(
        app.scalar_i64("select count(*) from users where status = $1", "deleted")
            .await,
        0
    );
    let records = app
        .scalar_i64(
            "select count(*) from audit_log where action = $1",
            "user.permanent_delete",
        )
        .await;
    assert_eq!(records, 150);
}
