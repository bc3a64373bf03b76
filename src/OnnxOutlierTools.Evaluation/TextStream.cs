using OnnxOutlierTools.Calibration.Text;

namespace OnnxOutlierTools.Evaluation;

/// <summary>A text as one token stream: in <see cref="EvalBosMode.Document"/> mode each paragraph (blank-line separated,
/// trimmed: <see cref="CorpusText.Paragraphs"/>) is encoded with BOS in front and the encodings are concatenated (no EOS);
/// otherwise the whole text is encoded as it is, newlines included. With a budget only the first <c>maxTokens</c> ids are
/// kept (and only as much text is encoded as they need).</summary>
internal static class TextStream
{
    public static int[] Build(string text, TextTokenizer tokenizer, bool documentBos, int? bosId, int? maxTokens)
    {
        if (!documentBos)
        {
            int[] ids = CalibrationCorpus.EncodePrefix(text, tokenizer, maxTokens);
            return maxTokens is int m && ids.Length > m ? ids[..m] : ids;
        }
        int bos = bosId ?? throw new ArgumentException("document BOS needs a BOS id", nameof(bosId));
        var stream = new List<int>();
        foreach (string paragraph in CorpusText.Paragraphs(text))
        {
            stream.Add(bos);
            stream.AddRange(tokenizer.Encode(paragraph));
            if (maxTokens is int budget && stream.Count >= budget) return stream.GetRange(0, budget).ToArray();
        }
        return stream.ToArray();
    }
}
