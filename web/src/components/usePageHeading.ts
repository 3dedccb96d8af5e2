// One hook for every page (used by the Layout): the tab's title follows the page's <h1> ("<Page> · Modelmarket"),
// and after a route change focus moves to that <h1> so that a screen reader announces the new page instead of
// staying on the link that led there. Pages render their <h1> late (after their data), hence the observer.
import { useEffect, useRef, type RefObject } from 'react';
import { useLocation } from 'react-router-dom';

const SITE = 'Modelmarket';

export function usePageHeading(main: RefObject<HTMLElement | null>) {
  const { pathname } = useLocation();
  const firstRoute = useRef(true);
  useEffect(() => {
    const root = main.current;
    if (!root) return;
    // The first page of a visit keeps the browser's own start (the skip link first); later ones move focus.
    let focusPending = !firstRoute.current;
    firstRoute.current = false;
    const focusAtNavigation = document.activeElement;
    const sync = () => {
      const heading = root.querySelector('h1');
      const text = heading?.textContent?.trim();
      const title = text ? `${text} · ${SITE}` : SITE;
      if (document.title !== title) document.title = title;
      if (!focusPending) return;
      // A heading that appears after the person has moved on (typed, tabbed) must not take their focus away.
      const untouched = document.activeElement === focusAtNavigation || document.activeElement === document.body;
      if (heading && untouched) {
        heading.tabIndex = -1;
        heading.focus();
      }
      if (heading || !untouched) focusPending = false;
    };
    sync();
    const observer = new MutationObserver(sync);
    observer.observe(root, { childList: true, subtree: true, characterData: true });
    return () => observer.disconnect();
  }, [pathname, main]);
}
