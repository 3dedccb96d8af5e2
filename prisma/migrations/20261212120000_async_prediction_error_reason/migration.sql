-- Why a FAILED asynchronous prediction was refused, when its error says (API_KEY_REVOKED, VERSION_ARCHIVED, …).
ALTER TABLE "async_predictions" ADD COLUMN "error_reason" TEXT;
