using System.Globalization;

namespace OnnxOutlierTools.Analysis;

/// <summary>The token ids that carry massive activations, for mitigations that prefix or remove them (SCIENCE.md 2.3,
/// 2.7): BOS / position 0, delimiters, others.</summary>
internal static class MassiveActivationTokens
{
    public static IReadOnlyList<MassiveActivationToken> Collect(IReadOnlyList<MassiveActivationFinder.Candidate> candidates) =>
        candidates
            .GroupBy(c => c.Token.TokenId)
            .Select(g =>
            {
                var positions = g.Select(c => c.Token.Position).Distinct().Order().ToList();
                string? text = g.Select(c => c.Hit.Token.Text).FirstOrDefault(t => t is not null);
                return new MassiveActivationToken
                {
                    TokenId = g.Key,
                    Text = text,
                    Category = positions.All(p => p == 0) ? TokenCategory.FirstPosition : IsDelimiter(text) ? TokenCategory.Delimiter : TokenCategory.Other,
                    Positions = positions,
                    Count = g.Select(c => (c.Token.Window, c.Token.Position)).Distinct().Count(),
                    Channels = g.Select(c => c.Channel).Distinct().Order().ToList(),
                    MaxAbs = g.Max(c => c.Hit.Abs),
                };
            })
            .OrderByDescending(t => t.Count).ThenByDescending(t => t.MaxAbs)
            .ToList();

    /// <summary>Punctuation or whitespace only (after the tokenizers' space markers: SentencePiece's U+2581, byte-level
    /// BPE's U+0120 and U+010A).</summary>
    internal static bool IsDelimiter(string? text)
    {
        if (string.IsNullOrEmpty(text)) return false;
        return text.All(c => c is '\u2581' or '\u0120' or '\u010A' || char.IsWhiteSpace(c) || char.IsPunctuation(c)
            || CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.MathSymbol or UnicodeCategory.OtherSymbol);
    }
}
