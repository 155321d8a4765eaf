//! Who may call the API: the administrator's key and the Supabase JWT secret.

use super::secret::Secret;

/// The authentication settings, as given (both secret).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthSettings {
    /// The administrator's API key (secret). Absent: one is generated at first start.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<Secret<String>>,

    /// The Supabase JWT secret used to verify users' tokens (secret).
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    pub supabase_jwt_secret: Option<Secret<String>>,
}

/// The authentication settings, checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The administrator's API key; `None`: generate one at first start.
    pub admin_api_key: Option<Secret<String>>,
    /// The Supabase JWT secret, if any.
    pub supabase_jwt_secret: Option<Secret<String>>,
}

impl AuthSettings {
    /// Empty values count as absent.
    pub fn check(&self) -> AuthConfig {
        AuthConfig {
            admin_api_key: super::present(&self.admin_api_key),
            supabase_jwt_secret: super::present(&self.supabase_jwt_secret),
        }
    }
}
