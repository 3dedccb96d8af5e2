-- API keys that may download licensed model files (issue 9, row 6): no key could before, beyond its scope.
ALTER TYPE "ApiScope" ADD VALUE 'DOWNLOAD';
