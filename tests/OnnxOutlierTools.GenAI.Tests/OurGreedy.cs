using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>Our own greedy decoding (<see cref="KvCacheDecoder"/>: the prompt in one run, then one token per
/// step with the cache, argmax with the lowest id on ties), the reference genai is held to.</summary>
public static class OurGreedy
{
    public static int[] Run(string model, IReadOnlyList<int> prompt, int newTokens, int? eos = null)
    {
        using var decoder = new KvCacheDecoder(model);
        var output = decoder.Run(prompt);
        var result = new List<int>();
        while (true)
        {
            int next = ArgMax(output.Logits[^1]);
            result.Add(next);
            if (result.Count == newTokens || next == eos) return [.. result];
            output = decoder.Run([next], output.Present);
        }
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
