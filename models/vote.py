"""Network votes (最美城管人) and satisfaction surveys (社会公众满意度测评).

Every vote is a row; the per-day rules are counter rows bumped by a conditional upsert (the row lock decides), and
each vote takes the slot its counters handed out, under unique keys: a vote can never count twice.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import BigIntPK, UTCDateTime, utcnow
from server.extensions import db

__all__ = [
    "QuestionKind",
    "ResultsPolicy",
    "Survey",
    "SurveyAnswer",
    "SurveyQuestion",
    "SurveyResponse",
    "Vote",
    "VoteCampaign",
    "VoteCandidate",
    "VoteCandidateQuota",
    "VoteQuota",
]


class ResultsPolicy(enum.StrEnum):
    LIVE = "live"  # ranking shown while voting
    HIDDEN = "hidden"  # never shown to citizens (the office publishes it)
    AFTER_END = "after_end"  # shown once the vote has closed

    @property
    def label(self) -> str:
        return {"live": "实时显示排名", "hidden": "不公开", "after_end": "结束后公布"}[self.value]

    def shows(self, ends_at: datetime, at: datetime) -> bool:
        """Whether citizens see counts at `at`, for a vote that ends at `ends_at`."""
        return self is ResultsPolicy.LIVE or (self is ResultsPolicy.AFTER_END and at >= ends_at)


class VoteCampaign(db.Model):
    __tablename__ = "vote_campaign"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="period"),
        sa.CheckConstraint("votes_per_day >= 1 AND per_candidate_per_day >= 1", name="limits"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    votes_per_day: Mapped[int] = mapped_column(default=1)  # per citizen, all candidates together
    per_candidate_per_day: Mapped[int] = mapped_column(default=1)
    followers_only: Mapped[bool] = mapped_column(default=False)  # off by default: WeChat forbids inducing follows
    results_policy: Mapped[ResultsPolicy] = mapped_column(
        sa.Enum(ResultsPolicy, native_enum=False, length=16), default=ResultsPolicy.LIVE
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    candidates: Mapped[list[VoteCandidate]] = relationship(
        back_populates="campaign", order_by="VoteCandidate.sort, VoteCandidate.id", cascade="all, delete-orphan"
    )

    def is_open(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def results_visible(self, at: datetime) -> bool:
        return self.results_policy.shows(self.ends_at, at)


class VoteCandidate(db.Model):
    __tablename__ = "vote_candidate"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("vote_campaign.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(32))
    unit_name: Mapped[str] = mapped_column(sa.String(64), default="")
    story: Mapped[str] = mapped_column(sa.Text, default="")
    photo_path: Mapped[str | None] = mapped_column(sa.String(128))  # under MEDIA_ROOT, re-encoded JPEG
    photo_url: Mapped[str | None] = mapped_column(sa.String(512))  # or an https URL
    sort: Mapped[int] = mapped_column(default=0)
    campaign: Mapped[VoteCampaign] = relationship(back_populates="candidates")


class VoteQuota(db.Model):
    """Votes a citizen has used in a campaign on one local (Shanghai) day; the upsert that bumps it is the lock."""

    __tablename__ = "vote_quota"
    __table_args__ = (sa.CheckConstraint("used >= 1", name="used"),)

    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("vote_campaign.id", ondelete="CASCADE"), primary_key=True)
    openid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    used: Mapped[int] = mapped_column(default=1)


class VoteCandidateQuota(db.Model):
    """The same, per candidate (the per-candidate-per-day rule)."""

    __tablename__ = "vote_candidate_quota"
    __table_args__ = (sa.CheckConstraint("used >= 1", name="used"),)

    candidate_id: Mapped[int] = mapped_column(sa.ForeignKey("vote_candidate.id", ondelete="CASCADE"), primary_key=True)
    openid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    used: Mapped[int] = mapped_column(default=1)


class Vote(db.Model):
    """One vote. `seq`/`candidate_seq` are the counter values it took: unique, so a slot is never used twice."""

    __tablename__ = "vote"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "openid", "day", "seq", name="uq_vote_daily_slot"),
        sa.UniqueConstraint("campaign_id", "candidate_id", "openid", "day", "candidate_seq", name="uq_vote_cand_slot"),
        # voided_at too: a campaign's counts come from the index alone
        sa.Index("ix_vote_campaign_candidate", "campaign_id", "candidate_id", "voided_at"),
        sa.Index("ix_vote_campaign_ip", "campaign_id", "ip"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("vote_campaign.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(sa.ForeignKey("vote_candidate.id", ondelete="CASCADE"))
    openid: Mapped[str] = mapped_column(sa.String(64))
    day: Mapped[date] = mapped_column(sa.Date)  # local (Asia/Shanghai) day of cast_at
    seq: Mapped[int]
    candidate_seq: Mapped[int]
    cast_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str] = mapped_column(sa.String(45))
    subnet: Mapped[str] = mapped_column(sa.String(49))  # /24 for IPv4, /48 for IPv6
    user_agent: Mapped[str] = mapped_column(sa.String(256), default="")
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(sa.String(256))
    voided_by: Mapped[str | None] = mapped_column(sa.String(64))


class QuestionKind(enum.StrEnum):
    SINGLE = "single"
    MULTIPLE = "multiple"
    SCALE = "scale"  # 1 (很不满意) to 5 (很满意)
    TEXT = "text"

    @property
    def label(self) -> str:
        return {"single": "单选", "multiple": "多选", "scale": "打分", "text": "填空"}[self.value]


class Survey(db.Model):
    __tablename__ = "survey"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(64))
    intro: Mapped[str] = mapped_column(sa.Text, default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    questions: Mapped[list[SurveyQuestion]] = relationship(
        back_populates="survey", order_by="SurveyQuestion.position", cascade="all, delete-orphan"
    )

    def is_open(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


class SurveyQuestion(db.Model):
    __tablename__ = "survey_question"
    __table_args__ = (sa.UniqueConstraint("survey_id", "position", name="uq_survey_question_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(sa.ForeignKey("survey.id", ondelete="CASCADE"))
    position: Mapped[int]
    kind: Mapped[QuestionKind] = mapped_column(sa.Enum(QuestionKind, native_enum=False, length=16))
    text: Mapped[str] = mapped_column(sa.String(200))
    options: Mapped[Any] = mapped_column(sa.JSON, default=list)  # list[str] for single/multiple
    required: Mapped[bool] = mapped_column(default=True)
    is_district: Mapped[bool] = mapped_column(default=False)  # "您所在的区": its answer is the response's district
    survey: Mapped[Survey] = relationship(back_populates="questions")


class SurveyResponse(db.Model):
    __tablename__ = "survey_response"
    __table_args__ = (sa.UniqueConstraint("survey_id", "openid", name="uq_survey_response_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(sa.ForeignKey("survey.id", ondelete="CASCADE"))
    openid: Mapped[str] = mapped_column(sa.String(64))
    district: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    answers: Mapped[list[SurveyAnswer]] = relationship(back_populates="response", cascade="all, delete-orphan")


class SurveyAnswer(db.Model):
    """One chosen option (single/multiple: `value` is its index), a score (scale: 1..5) or a text."""

    __tablename__ = "survey_answer"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    response_id: Mapped[int] = mapped_column(sa.ForeignKey("survey_response.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[int] = mapped_column(sa.ForeignKey("survey_question.id", ondelete="CASCADE"), index=True)
    value: Mapped[int | None]
    text: Mapped[str | None] = mapped_column(sa.Text)
    response: Mapped[SurveyResponse] = relationship(back_populates="answers")
