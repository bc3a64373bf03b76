namespace OnnxOutlierTools.Calibration.Text;

/// <summary>One added token of a Hugging Face tokenizer.json (special or not).</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool Normalized);

/// <summary>
/// Hugging Face's first encoding step: added tokens written literally in the text are cut out
/// (leftmost match, the longest at that position) and the text between them is encoded on its own,
/// each piece normalized separately (so Llama's "▁" prefix starts every piece, as in the Rust crate).
/// Simplification, noted at load time when it matters: tokens are matched on the raw text whether or not
/// they are "normalized", and lstrip/rstrip/single_word are not applied.
/// </summary>
internal sealed class AddedTokenSplitter
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Encodes <paramref name="text"/>: added tokens become their ids, the text between them goes
    /// through <paramref name="encodePiece"/> (called with the piece and whether it is the text's first).</summary>
    public int[] Encode(string text, Action<string, bool, List<int>> encodePiece)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        int pieceStart = 0;
        bool first = true;
        for (int i = 0; i < text.Length;)
        {
            if (_byFirstChar.TryGetValue(text[i], out var candidates) && Match(text, i, candidates) is { } token)
            {
                if (i > pieceStart) { encodePiece(text[pieceStart..i], first, ids); }
                first = false;
                ids.Add(token.Id);
                i += token.Content.Length;
                pieceStart = i;
            }
            else i++;
        }
        if (text.Length > pieceStart) encodePiece(text[pieceStart..], first, ids);
        return ids.ToArray();
    }

    private static AddedToken? Match(string text, int at, AddedToken[] candidates)
    {
        foreach (var t in candidates)
            if (string.CompareOrdinal(text, at, t.Content, 0, t.Content.Length) == 0 && at + t.Content.Length <= text.Length) return t;
        return null;
    }
}
