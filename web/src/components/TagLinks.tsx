// A model's tags, each linking to the marketplace filtered by it (model cards and the model page).
import { Link } from 'react-router-dom';

export function TagLinks({ tags }: { tags: readonly string[] }) {
  return (
    <p>
      {tags.map((tag) => (
        <Link key={tag} className="tag" to={`/?tag=${encodeURIComponent(tag)}`}>
          {tag}
        </Link>
      ))}
    </p>
  );
}
