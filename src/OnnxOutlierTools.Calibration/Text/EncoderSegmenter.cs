namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// [CLS] ... [SEP] segments for encoders (BERT-like): the text is split into paragraphs at blank lines
/// and paragraphs into sentences; whole sentences are packed greedily into a segment of at most
/// <c>seq-len</c> ids (CLS and SEP included) and a paragraph always starts a new segment. A sentence
/// longer than a segment is cut before a word start (<see cref="TextTokenizer.StartsWord"/>: never inside
/// a WordPiece "##" run unless one word alone is longer than a segment). token_type_ids are all 0. With a
/// token budget the last segment is cut (again before a word start) to fit.
/// </summary>
internal static class EncoderSegmenter
{
    public static (List<CalibrationWindow> Windows, int Available, bool BudgetReached) Build(string text, string source, TextTokenizer tokenizer, CorpusSettings settings)
    {
        if (tokenizer.Specials.Cls is not int cls || tokenizer.Specials.Sep is not int sep)
            throw new CalibrationInputException(tokenizer.Source, "defines no [CLS]/[SEP] tokens, which encoder segments need");
        int capacity = settings.SeqLen - 2;
        long left = settings.MaxTokens ?? long.MaxValue;
        var windows = new List<CalibrationWindow>();
        int available = 0;
        var paragraphs = CorpusText.Paragraphs(text);
        for (int p = 0; p < paragraphs.Count; p++)
        {
            var current = new List<int>();
            int start = 0, consumed = 0;
            // Emits the current segment; false once the budget is spent.
            bool Flush()
            {
                if (current.Count == 0) return true;
                if (left < 3) return false;
                int fit = (int)Math.Min(current.Count, left - 2);
                if (fit < current.Count) fit = CutBefore(tokenizer, current, fit);
                var ids = new int[fit + 2];
                ids[0] = cls;
                current.CopyTo(0, ids, 1, fit);
                ids[^1] = sep;
                windows.Add(new CalibrationWindow(windows.Count, ids, false, WindowKind.EncoderSegment, p, start));
                left -= ids.Length;
                bool all = fit == current.Count;
                current.Clear();
                return all;
            }
            foreach (string sentence in CorpusText.Sentences(paragraphs[p]))
            {
                int[] ids = tokenizer.Encode(sentence);
                available += ids.Length;
                int at = 0;
                while (at < ids.Length)
                {
                    int rest = ids.Length - at;
                    if (current.Count + rest <= capacity)
                    {
                        current.AddRange(ids.AsSpan(at).ToArray());
                        consumed += rest;
                        break;
                    }
                    if (current.Count > 0)
                    {
                        if (!Flush()) return (windows, available, true);
                        start = consumed;
                        continue;
                    }
                    // One sentence longer than a segment: a piece cut before a word start.
                    int take = CutBefore(tokenizer, ids.AsSpan(at, rest).ToArray(), capacity);
                    current.AddRange(ids.AsSpan(at, take).ToArray());
                    consumed += take;
                    at += take;
                    if (!Flush()) return (windows, available, true);
                    start = consumed;
                }
            }
            if (!Flush()) return (windows, available, true);
            if (left < 3 && p + 1 < paragraphs.Count) return (windows, available, true);
        }
        if (windows.Count == 0) throw new CalibrationInputException(source, $"encodes to no tokens with {tokenizer.Source}");
        return (windows, available, false);
    }

    /// <summary>How many of <paramref name="ids"/> to keep so at most <paramref name="limit"/> are kept and the
    /// next one starts a word; <paramref name="limit"/> itself when no word start allows a cut.</summary>
    private static int CutBefore(TextTokenizer tokenizer, IReadOnlyList<int> ids, int limit)
    {
        if (limit >= ids.Count) return ids.Count;
        for (int cut = limit; cut > 0; cut--)
            if (tokenizer.StartsWord(ids[cut])) return cut;
        return limit;
    }
}
