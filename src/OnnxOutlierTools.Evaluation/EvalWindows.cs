namespace OnnxOutlierTools.Evaluation;

/// <summary>One evaluation window: the text tokens after the window prefix (a BOS or a sink prefix, fed to a model that does
/// not have it baked in), and the first of them that is scored.</summary>
/// <param name="Text">Text tokens of the window (the prefix excluded).</param>
/// <param name="FirstTarget">Index in <see cref="Text"/> of the first scored token; Text[FirstTarget..] are scored. Never 0:
/// the first text token is context only (a sink-bias model, fed the text without its prefix, has no logits that predict it).</param>
/// <param name="SourceStart">Index of Text[0] in the token stream (text) or the window's index (ids).</param>
public sealed record EvalWindow(int Index, int[] Text, int FirstTarget, int SourceStart)
{
    public int ScoredTokens => Text.Length - FirstTarget;
}

/// <summary>
/// The window rules. Text: windows of <c>window</c> positions, each = prefix + <c>window - |prefix|</c> consecutive stream tokens,
/// starting every <c>stride</c> stream tokens (default: no overlap); only full windows (the tail that does not fill one is
/// dropped and counted). With overlap (stride less than the text tokens of a window), a window scores only the tokens no earlier
/// window scored (Hugging Face's strided perplexity); the rest is context. Ids: each window as given; a window that starts with
/// a model's baked prefix has it removed, otherwise it is taken as the text after the prefix.
/// </summary>
public static class EvalWindows
{
    /// <summary>Strided windows over <paramref name="stream"/> with <paramref name="textLength"/> text tokens each.</summary>
    public static (IReadOnlyList<EvalWindow> Windows, int DroppedTail) Strided(IReadOnlyList<int> stream, int textLength, int stride)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (textLength < 2) throw new ArgumentOutOfRangeException(nameof(textLength), textLength, "a window needs at least 2 text tokens (one of context, one scored)");
        if (stride < 1 || stride > textLength) throw new ArgumentOutOfRangeException(nameof(stride), stride, $"the stride must be 1 to {textLength}");
        var windows = new List<EvalWindow>();
        int previousEnd = 0;
        for (int start = 0; start + textLength <= stream.Count; start += stride)
        {
            var text = new int[textLength];
            for (int i = 0; i < textLength; i++) text[i] = stream[start + i];
            int first = Math.Max(1, previousEnd - start);
            windows.Add(new EvalWindow(windows.Count, text, first, start));
            previousEnd = start + textLength;
        }
        return (windows, stream.Count - previousEnd);
    }

    /// <summary><paramref name="given"/> windows as given; <paramref name="prefix"/> (a baked sink prefix, or none) is removed
    /// where a window starts with it.</summary>
    public static IReadOnlyList<EvalWindow> AsGiven(IReadOnlyList<int[]> given, IReadOnlyList<int> prefix, string source)
    {
        var windows = new List<EvalWindow>();
        for (int w = 0; w < given.Count; w++)
        {
            int[] ids = given[w];
            bool startsWithPrefix = prefix.Count > 0 && ids.Length >= prefix.Count && ids.AsSpan(0, prefix.Count).SequenceEqual(prefix.ToArray());
            int[] text = startsWithPrefix ? ids[prefix.Count..] : ids;
            if (text.Length < 2)
                throw new EvaluationInputException($"{source}: window {w} has {text.Length} token(s){(startsWithPrefix ? " after the baked prefix" : "")}; a window needs at least 2 (one of context, one scored)");
            windows.Add(new EvalWindow(w, text, 1, w));
        }
        return windows;
    }
}
