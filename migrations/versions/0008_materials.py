"""materials: officers' photos, processed renditions, WeChat image uploads

Revision ID: 0008_materials
Revises: 0002
Create Date: 2026-11-24 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_materials'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('material_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=96), nullable=False),
    sa.Column('source', sa.Enum('CHAT', 'UPLOAD', name='materialsource', native_enum=False, length=16), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'READY', 'FAILED', name='materialstate', native_enum=False, length=16), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('uploader_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('media_id', sa.String(length=128), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('mime', sa.String(length=32), nullable=True),
    sa.Column('original_path', sa.String(length=200), nullable=True),
    sa.Column('public_path', sa.String(length=200), nullable=True),
    sa.Column('thumb_path', sa.String(length=200), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('phash', sa.String(length=16), nullable=True),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('caption', sa.String(length=500), nullable=True),
    sa.Column('latitude', sa.Double(), nullable=True),
    sa.Column('longitude', sa.Double(), nullable=True),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('starred', sa.Boolean(), nullable=False),
    sa.Column('used_in_article', sa.Boolean(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_material_item_unit_id_unit'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['uploader_id'], ['staff.id'], name=op.f('fk_material_item_uploader_id_staff'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_material_item')),
    sa.UniqueConstraint('key', name=op.f('uq_material_item_key')),
    sa.UniqueConstraint('uploader_id', 'sha256', name='uq_material_item_uploader_sha256')
    )
    op.create_index(op.f('ix_material_item_group_id'), 'material_item', ['group_id'], unique=False)
    op.create_index('ix_material_item_unit_received', 'material_item', ['unit_id', 'received_at'], unique=False)
    op.create_index('ix_material_item_uploader_received', 'material_item', ['uploader_id', 'received_at'], unique=False)
    op.create_table('material_rendition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('recipe_key', sa.String(length=64), nullable=False),
    sa.Column('recipe', sa.JSON(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=200), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['material_item.id'], name=op.f('fk_material_rendition_item_id_material_item'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_material_rendition')),
    sa.UniqueConstraint('item_id', 'recipe_key', name='uq_material_rendition_item_recipe')
    )
    op.create_table('wechat_image',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('media_id', sa.String(length=128), nullable=True),
    sa.Column('url', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_image')),
    sa.UniqueConstraint('sha256', 'kind', name='uq_wechat_image_sha256_kind')
    )


def downgrade():
    op.drop_table('wechat_image')
    op.drop_table('material_rendition')
    op.drop_index('ix_material_item_uploader_received', table_name='material_item')
    op.drop_index('ix_material_item_unit_received', table_name='material_item')
    op.drop_index(op.f('ix_material_item_group_id'), table_name='material_item')
    op.drop_table('material_item')
