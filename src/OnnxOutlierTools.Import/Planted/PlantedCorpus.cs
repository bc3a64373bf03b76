namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// The evaluation windows of the planted models: the TinyStories sample split into stories at blank lines
/// (each trimmed, empty ones dropped), each encoded with llama2.c's tokenizer, the BOS tokens removed (the
/// planted massive activation fires on every BOS token, so only position 0 may hold one), the first
/// <see cref="StreamTokens"/> tokens of that stream cut into windows of BOS + <see cref="WindowTokens"/> - 1 tokens.
/// </summary>
public static class PlantedCorpus
{
    public const int WindowTokens = 256;
    public const int StreamTokens = 20_000;
    public const string Protocol =
        "stories = text split at blank lines, trimmed, empty dropped; stream = concatenated llama2.c encodings with every BOS removed; " +
        "window = [BOS 1] + next 255 stream tokens (stride 255) from the first 20000 stream tokens; positions 1..255 scored; ppl = exp(mean NLL)";

    public static IReadOnlyList<int[]> Windows(string text, Llama2cTokenizer tokenizer, int? maxWindows = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var stream = new List<int>();
        foreach (string chunk in text.Replace("\r\n", "\n", StringComparison.Ordinal).Split("\n\n"))
        {
            string story = chunk.Trim();
            if (story.Length == 0) continue;
            stream.AddRange(tokenizer.Encode(story, bos: false));
            if (stream.Count >= StreamTokens) break;
        }
        if (stream.Count > StreamTokens) stream.RemoveRange(StreamTokens, stream.Count - StreamTokens);
        var windows = new List<int[]>();
        for (int i = 0; i + WindowTokens - 1 <= stream.Count && (maxWindows is null || windows.Count < maxWindows); i += WindowTokens - 1)
            windows.Add([Llama2cTokenizer.Bos, .. stream.GetRange(i, WindowTokens - 1)]);
        if (windows.Count == 0) throw new ArgumentException($"the text gives {stream.Count} tokens, fewer than one window of {WindowTokens}");
        return windows;
    }

    /// <summary>exp(mean NLL) over the windows (positions 1..n-1 of each), in float64; windows run in parallel,
    /// summed in order, so the result does not depend on the scheduling.</summary>
    public static (double Perplexity, int ScoredTokens) Perplexity(DecoderWeights weights, IReadOnlyList<int[]> windows)
    {
        var trace = new DecoderTrace(weights);
        var sums = new double[windows.Count];
        var counts = new int[windows.Count];
        Parallel.For(0, windows.Count, i => (sums[i], counts[i]) = trace.Nll(windows[i]));
        double total = 0;
        foreach (double s in sums) total += s;
        int scored = counts.Sum();
        return (Math.Exp(total / scored), scored);
    }
}
