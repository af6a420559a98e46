"""sign-in state: one-time codes, SAML requests and assertions, lockout and session epochs

Revision ID: 0003_sign_in_state
Revises: 0002_staff_accounts
Create Date: 2026-11-22 05:32:56.740042

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_sign_in_state'
down_revision = '0002_staff_accounts'
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table('saml_assertions',
    sa.Column('id', sa.String(length=256), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_assertions'))
    )
    with op.batch_alter_table('saml_assertions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saml_assertions_expires_at'), ['expires_at'], unique=False)

    op.create_table('saml_requests',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('next_path', sa.String(length=2000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_requests'))
    )
    with op.batch_alter_table('saml_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saml_requests_expires_at'), ['expires_at'], unique=False)

    op.create_table('one_time_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('doctor_id', sa.Integer(), nullable=True),
    sa.Column('staff_user_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=16), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sends', sa.Integer(), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("purpose IN ('sign_in', 'phone_check')", name=op.f('ck_one_time_codes_purpose')),
    sa.ForeignKeyConstraint(['doctor_id'], ['doctors.id'], name=op.f('fk_one_time_codes_doctor_id_doctors')),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_one_time_codes_staff_user_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_one_time_codes')),
    sa.UniqueConstraint('handle', name=op.f('uq_one_time_codes_handle'))
    )
    with op.batch_alter_table('one_time_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_one_time_codes_doctor_id'), ['doctor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_one_time_codes_staff_user_id'), ['staff_user_id'], unique=False)

    with op.batch_alter_table('doctors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_sign_ins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_sign_in_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_sign_ins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('sign_in_locked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0'))




def downgrade():
    
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
        batch_op.drop_column('sign_in_locked_at')
        batch_op.drop_column('failed_sign_ins')

    with op.batch_alter_table('doctors', schema=None) as batch_op:
        batch_op.drop_column('last_sign_in_at')
        batch_op.drop_column('session_epoch')
        batch_op.drop_column('failed_sign_ins')

    with op.batch_alter_table('one_time_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_one_time_codes_staff_user_id'))
        batch_op.drop_index(batch_op.f('ix_one_time_codes_doctor_id'))

    op.drop_table('one_time_codes')
    with op.batch_alter_table('saml_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saml_requests_expires_at'))

    op.drop_table('saml_requests')
    with op.batch_alter_table('saml_assertions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saml_assertions_expires_at'))

    op.drop_table('saml_assertions')

