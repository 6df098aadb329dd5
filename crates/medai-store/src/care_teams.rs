//! Care teams: named groups of users; patients are assigned to teams, and clinicians and nurses
//! see the patients of the teams they belong to.

use crate::StoreError;
use sqlx::{AnyConnection, FromRow};

/// A care team and its members.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CareTeam {
    /// Unique id.
    pub id: String,
    /// Unique name.
    pub name: String,
}

/// Creates a team.
pub async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO care_teams (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(conn)
        .await
        .map_err(|e| StoreError::unique(e, "care team name"))?;
    Ok(())
}

/// Every team, by name.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<CareTeam>, StoreError> {
    Ok(
        sqlx::query_as("SELECT id, name FROM care_teams ORDER BY name")
            .fetch_all(conn)
            .await?,
    )
}

/// The team with this id or name.
pub async fn find(
    conn: &mut AnyConnection,
    id_or_name: &str,
) -> Result<Option<CareTeam>, StoreError> {
    Ok(
        sqlx::query_as("SELECT id, name FROM care_teams WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_optional(conn)
            .await?,
    )
}

/// Ids of the team's members.
pub async fn members(conn: &mut AnyConnection, team_id: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM care_team_members WHERE team_id = $1 ORDER BY user_id")
            .bind(team_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(u,)| u).collect())
}

/// Every membership as `(team id, user id)`, in one query (for listing all teams).
pub async fn all_members(conn: &mut AnyConnection) -> Result<Vec<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT team_id, user_id FROM care_team_members ORDER BY team_id, user_id")
            .fetch_all(conn)
            .await?,
    )
}

/// Adds a user to a team (no-op if already a member).
pub async fn add_member(
    conn: &mut AnyConnection,
    team_id: &str,
    user_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO care_team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(team_id)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a user from a team; false if they were not a member.
pub async fn remove_member(
    conn: &mut AnyConnection,
    team_id: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query("DELETE FROM care_team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Teams the user belongs to.
pub async fn of_user(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<CareTeam>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name FROM care_teams t JOIN care_team_members m ON m.team_id = t.id \
         WHERE m.user_id = $1 ORDER BY t.name",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}
