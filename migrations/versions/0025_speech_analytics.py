"""Speech analytics (#26): timed words and a per-call status on transcripts, per-site engines,
dictionary phrases, automatic call tags (astertrack/speech/).

The search index (SQLite FTS5 table / PostgreSQL GIN index) is made by astertrack.speech.search on
first use, idempotently, so a schema made by create_all gets it too.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 22:00:00
"""
import sqlalchemy as sa
from alembic import op

from astertrack.db.types import UTCDateTime

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


SEARCH_DDL = {
    'sqlite': (
        "CREATE VIRTUAL TABLE transcript_fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 0')",
        "CREATE TRIGGER trg_transcripts_fts_ins AFTER INSERT ON transcripts WHEN new.search_text IS NOT NULL "
        "BEGIN INSERT INTO transcript_fts (rowid, body) VALUES (new.id, new.search_text); END",
        "CREATE TRIGGER trg_transcripts_fts_upd AFTER UPDATE OF search_text ON transcripts "
        "BEGIN DELETE FROM transcript_fts WHERE rowid = old.id; "
        "INSERT INTO transcript_fts (rowid, body) SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL; END",
        "CREATE TRIGGER trg_transcripts_fts_del AFTER DELETE ON transcripts "
        "BEGIN DELETE FROM transcript_fts WHERE rowid = old.id; END",
    ),
    'postgresql': (
        "CREATE INDEX ix_transcripts_search ON transcripts USING gin (to_tsvector('simple', coalesce(search_text, '')))",
    ),
}


def upgrade() -> None:
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=12), server_default='done', nullable=False))
        batch_op.add_column(sa.Column('detail', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('words', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('audio_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=True))
    # transcript search: as astertrack.db.models.TRANSCRIPT_SEARCH_DDL at this revision
    for statement in SEARCH_DDL.get(op.get_bind().dialect.name, ()):
        op.execute(statement)
    op.create_table(
        'speech_settings',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id', ondelete='CASCADE'), nullable=False,
                  unique=True),
        sa.Column('engine', sa.String(length=20), nullable=False),
        sa.Column('model_path', sa.String(length=1024), nullable=True),
        sa.Column('language', sa.String(length=10), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
    )
    op.create_table(
        'speech_phrases',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id', ondelete='CASCADE'), nullable=True),
        sa.Column('tag', sa.String(length=80), nullable=False),
        sa.Column('phrase', sa.String(length=200), nullable=False),
        sa.Column('speaker', sa.String(length=10), nullable=False),
        sa.Column('negative', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_speech_phrases_site_tag', 'speech_phrases', ['site_id', 'tag'])
    op.create_table(
        'call_speech_tags',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('call_id', sa.Integer(), sa.ForeignKey('calls.id', ondelete='CASCADE'), nullable=False),
        sa.Column('tag', sa.String(length=80), nullable=False),
        sa.Column('phrase', sa.String(length=200), nullable=False),
        sa.Column('speaker', sa.String(length=10), nullable=True),
        sa.Column('at_seconds', sa.Float(), nullable=False),
        sa.Column('negative', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_call_speech_tags_call_id', 'call_speech_tags', ['call_id'])
    op.create_index('ix_call_speech_tags_tag', 'call_speech_tags', ['tag'])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        for name in ('trg_transcripts_fts_ins', 'trg_transcripts_fts_upd', 'trg_transcripts_fts_del'):
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
        op.execute('DROP TABLE IF EXISTS transcript_fts')
    else:
        op.execute('DROP INDEX IF EXISTS ix_transcripts_search')
    op.drop_table('call_speech_tags')
    op.drop_table('speech_phrases')
    op.drop_table('speech_settings')
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        for name in ('search_text', 'next_attempt_at', 'attempts', 'audio_seconds', 'words', 'detail', 'status'):
            batch_op.drop_column(name)
