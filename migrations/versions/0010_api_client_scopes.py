"""API client scopes: api_client_scopes, one row per scope a client holds; every existing
client gets the DPI's set (every scope but documents:admin)

Revision ID: 0010_api_client_scopes
Revises: 0009_content_retention
Create Date: 2026-11-24 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_api_client_scopes'
down_revision = '0009_content_retention'
branch_labels = None
depends_on = None

# The scopes as this migration knows them (never imported from the app: a migration must keep
# doing what it did when it was written).
SCOPES = ('documents:write', 'documents:read', 'documents:admin', 'consents:write',
          'patients:write', 'doctors:read', 'events:read')
#: What every client could do before scopes existed, less reaching other clients' documents.
DPI_SET = tuple(s for s in SCOPES if s != 'documents:admin')


def upgrade():
    op.create_table('api_client_scopes',
    sa.Column('api_client_id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.CheckConstraint(
        'scope IN (' + ', '.join(f"'{s}'" for s in SCOPES) + ')',
        name=op.f('ck_api_client_scopes_scope'),
    ),
    sa.ForeignKeyConstraint(['api_client_id'], ['api_clients.id'], name=op.f('fk_api_client_scopes_api_client_id_api_clients')),
    sa.PrimaryKeyConstraint('api_client_id', 'scope', name=op.f('pk_api_client_scopes'))
    )
    # Existing clients keep the DPI's set, revoked ones too (revocation stays final).
    for scope in DPI_SET:
        op.execute(
            sa.text(
                'INSERT INTO api_client_scopes (api_client_id, scope) '
                'SELECT id, :scope FROM api_clients'
            ).bindparams(scope=scope)
        )


def downgrade():
    op.drop_table('api_client_scopes')
