// Choosing a TensorFlow.js model's files (model.json and its weight shards) by dropping them or with a file input
// (keyboard users), and uploading them to POST /v1/artifacts with the upload's progress.
import { useId, useState, type DragEvent } from 'react';
import { ApiError, bearer, refreshSession, restErrorOf } from '../../api/client';

export interface UploadedArtifact {
  id: string;
  sha256: string;
  sizeBytes: number;
}

/** The server's artifact limit is larger; this only stops a wrong folder (a dataset, a video) from being sent. */
const MAX_FILES = 64;

/**
 * The multipart form the artifact route reads: each file a part named as model.json's weightsManifest names it;
 * the one JSON file is the model.json part whatever the file was called on disk.
 */
function artifactForm(files: File[]): FormData {
  const form = new FormData();
  for (const file of files) {
    form.append(file.name.endsWith('.json') ? 'model.json' : file.name, file, file.name);
  }
  return form;
}

function postArtifact(
  files: File[],
  onProgress: (fraction: number) => void,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/artifacts');
    for (const [name, value] of Object.entries(bearer())) xhr.setRequestHeader(name, value);
    // fetch() reports no upload progress; XMLHttpRequest's upload events do.
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // A body that is not JSON is reported by its status below.
      }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => reject(new ApiError([{ message: 'The upload failed', code: 'NETWORK_ERROR' }]));
    xhr.send(artifactForm(files));
  });
}

/** Uploads the files as one artifact; an expired access token is refreshed once and the upload retried. */
export async function uploadArtifact(files: File[], onProgress: (fraction: number) => void): Promise<UploadedArtifact> {
  let answer = await postArtifact(files, onProgress);
  if (answer.status === 401 && (await refreshSession())) answer = await postArtifact(files, onProgress);
  if (answer.status === 201) return answer.body as UploadedArtifact;
  throw restErrorOf(answer.status, answer.body);
}

/** What a form needs to pick files and upload them: the files, the progress (0..1, null before), and upload(). */
export function useArtifactUpload() {
  const [files, setFiles] = useState<File[]>([]);
  const [progress, setProgress] = useState<number | null>(null);
  return {
    files,
    progress,
    choose(chosen: File[]) {
      setFiles(chosen.slice(0, MAX_FILES));
      setProgress(null);
    },
    async upload(): Promise<UploadedArtifact> {
      setProgress(0);
      try {
        const artifact = await uploadArtifact(files, setProgress);
        setProgress(1);
        return artifact;
      } catch (error) {
        setProgress(null);
        throw error;
      }
    },
  };
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function ArtifactDropZone({
  label,
  upload,
  disabled,
}: {
  label: string;
  upload: ReturnType<typeof useArtifactUpload>;
  disabled?: boolean;
}) {
  const inputId = useId();
  const [dragging, setDragging] = useState(false);
  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    if (!disabled) upload.choose(Array.from(event.dataTransfer.files));
  };
  const percent = upload.progress === null ? null : Math.round(upload.progress * 100);
  return (
    <div
      role="group"
      aria-label={`Drop zone for ${label.toLowerCase()}`}
      className={dragging ? 'drop-zone dragging' : 'drop-zone'}
      onDragOver={(event) => {
        event.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={onDrop}
    >
      <label htmlFor={inputId}>{label}</label>
      <p className="muted">Drop model.json and its weight files here, or choose them:</p>
      <input
        id={inputId}
        type="file"
        multiple
        accept=".json,.bin,application/json,application/octet-stream"
        disabled={disabled}
        onChange={(event) => upload.choose(Array.from(event.target.files ?? []))}
      />
      {upload.files.length > 0 && (
        <ul aria-label="Chosen files">
          {upload.files.map((file) => (
            <li key={file.name}>
              {file.name} ({formatBytes(file.size)})
            </li>
          ))}
        </ul>
      )}
      {percent !== null && (
        <p>
          <progress max={100} value={percent} aria-label="Upload progress" />{' '}
          <span role="status">{percent === 100 ? 'Uploaded 100%' : `Uploading… ${percent}%`}</span>
        </p>
      )}
    </div>
  );
}
