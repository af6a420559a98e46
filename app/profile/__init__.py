"""Mon profil: the doctor's preferences (``preferences``), the change of email address
(``email``) and their pages (``views``)."""
