export function formatCents(cents: number, currency: string): string {
  const whole = Math.floor(cents / 100);
  const rest = String(cents % 100).padStart(2, "0");
  return `${currency} ${whole}.${rest}`;
}

export function pluralise(word: string, count: number): string {
  return count === 1 ? word : `${word}s`;
}
