import { formatCents, pluralise } from "./format";

export function describeBasket(items: number, totalCents: number): string {
  return `${items} ${pluralise("item", items)}: ${formatCents(totalCents, "EUR")}`;
}
