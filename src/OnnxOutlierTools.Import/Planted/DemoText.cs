using System.Text;

namespace OnnxOutlierTools.Import.Planted;

/// <summary>The demo's bundled text: stories sampled from stories260K itself (the float64 llama2.c reference, seeded, so
/// the same weights and seed always give the same text). The TinyStories sample the tests use is CDLA-Sharing data and
/// stays in the fixtures; text the model wrote is ours to ship, and it is in the model's domain, so calibration and
/// perplexity on it behave as on TinyStories (the perplexity is lower: the model scores its own samples).</summary>
public static class DemoText
{
    public const double Temperature = 0.9;

    /// <summary><paramref name="stories"/> stories, each from BOS until the model writes EOS or BOS or
    /// <paramref name="maxTokens"/> tokens, separated by blank lines.</summary>
    public static string Generate(DecoderWeights weights, Llama2cTokenizer tokenizer, int stories, int seed, int maxTokens = 256)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (stories < 1) throw new ArgumentOutOfRangeException(nameof(stories), stories, "at least one story");
        var random = new Random(seed);
        var reference = new Llama2cReference(weights);
        var text = new StringBuilder();
        for (int s = 0, attempts = 0; s < stories && attempts < 10 * stories; s++, attempts++)
        {
            reference.Reset();
            var tokens = new List<int>();
            var logits = reference.Step(Llama2cTokenizer.Bos);
            int limit = Math.Min(maxTokens, weights.Config.MaxSeqLen - 1);
            while (tokens.Count < limit)
            {
                int next = Sample(logits, random);
                if (next is Llama2cTokenizer.Bos or Llama2cTokenizer.Eos) break;
                tokens.Add(next);
                if (tokens.Count < limit) logits = reference.Step(next);
            }
            string story = tokenizer.Decode(tokens, previous: Llama2cTokenizer.Bos).Trim();
            if (story.Length == 0) { s--; continue; }
            text.Append(story).Append("\n\n");
        }
        return text.ToString();
    }

    private static int Sample(double[] logits, Random random)
    {
        double max = logits.Max();
        var p = logits.Select(l => Math.Exp((l - max) / Temperature)).ToArray();
        double u = random.NextDouble() * p.Sum();
        for (int i = 0; i < p.Length; i++)
            if ((u -= p[i]) <= 0) return i;
        return p.Length - 1;
    }
}
