"""Sign-in: passwords now; HIN (SAML), SMS codes and staff TOTP come with the sign-in issue."""
