"""The doctor's workspace: Mes documents, Mes patients, the viewer, Mon profil, and help."""
