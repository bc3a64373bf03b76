using OnnxOutlierTools.Analysis;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>The tokens whose keys and values are baked into the model (SCIENCE.md 2.3 and 2.7): BOS alone by default,
/// or a PrefixQuant-style prefix of several tokens. Immutable and validated at construction.</summary>
public sealed record SinkPrefix
{
    /// <summary>How many carrier tokens <see cref="Auto"/> takes after BOS unless told otherwise.</summary>
    public const int DefaultAutoTokens = 3;

    private SinkPrefix(IReadOnlyList<int> tokenIds, string source)
    {
        if (tokenIds.Count == 0) throw new SinkBiasException("the sink prefix needs at least one token");
        if (tokenIds.Any(t => t < 0)) throw new SinkBiasException($"sink prefix token ids must not be negative: {string.Join(",", tokenIds)}");
        TokenIds = tokenIds.ToArray();
        Source = source;
    }

    /// <summary>The prefix's token ids, in the order they sit in front of the text.</summary>
    public IReadOnlyList<int> TokenIds { get; }

    /// <summary>Where the ids came from ("bos", "auto", "explicit"), for reports and metadata.</summary>
    public string Source { get; }

    public int Length => TokenIds.Count;

    /// <summary>BOS alone (<c>--sink-bias</c>).</summary>
    public static SinkPrefix Bos(int bosId) => new([bosId], "bos");

    /// <summary>Explicit ids (<c>--sink-prefix 1,13,29889</c>), used as given.</summary>
    public static SinkPrefix Explicit(IEnumerable<int> ids) => new(ids.ToArray(), "explicit");

    /// <summary>Parses <c>--sink-prefix</c>'s TOKENS form: ids separated by commas (spaces allowed).</summary>
    public static SinkPrefix Parse(string tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var ids = new List<int>();
        foreach (string part in tokens.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                throw new SinkBiasException($"--sink-prefix: '{part}' is not a token id (expected 'auto' or ids such as 1,13)");
            ids.Add(id);
        }
        return Explicit(ids);
    }

    /// <summary>PrefixQuant-style prefix from <c>analyze</c>'s carrier tokens: BOS first (it always starts the text it
    /// replaces), then the other tokens that carried massive activations, in a fixed order: most occurrences first, ties
    /// by the larger max |x|, then the smaller token id; tokens that carried them only at position 0 are the window's
    /// first token (BOS's role) and are not repeated; at most <paramref name="maxTokens"/> after BOS.</summary>
    public static SinkPrefix Auto(int bosId, IReadOnlyList<MassiveActivationToken> carriers, int maxTokens = DefaultAutoTokens)
    {
        ArgumentNullException.ThrowIfNull(carriers);
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        var extra = carriers
            .Where(t => t.TokenId != bosId && t.Positions.Any(p => p > 0))
            .OrderByDescending(t => t.Count).ThenByDescending(t => t.MaxAbs).ThenBy(t => t.TokenId)
            .Select(t => t.TokenId).Distinct().Take(maxTokens);
        return new SinkPrefix([bosId, .. extra], "auto");
    }

    public override string ToString() => $"{Source} [{string.Join(",", TokenIds)}]";
}
