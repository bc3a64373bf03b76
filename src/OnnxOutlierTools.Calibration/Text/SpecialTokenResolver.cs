using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>Sets a loaded tokenizer's special ids and BOS convention from its format, its configs and the
/// model's configs, in that order of trust (see <see cref="TokenizerLocator"/>).</summary>
internal static class SpecialTokenResolver
{
    public static void Apply(TextTokenizer tokenizer, TokenizerConfig config, IReadOnlyList<ModelFolderFacts> modelFacts)
    {
        var format = tokenizer.FormatSpecials();
        int? FromConfig(string key, int? fallback)
        {
            if (config.Token(key) is not { } content) return fallback;
            if (tokenizer.TokenToId(content) is int id) return id;
            tokenizer.AddNote($"{string.Join("/", config.Files)}: {key} \"{content}\" is not in the tokenizer's vocabulary; ignored");
            return fallback;
        }
        var specials = new SpecialTokenIds(
            FromConfig("bos_token", format.Bos), FromConfig("eos_token", format.Eos), FromConfig("cls_token", format.Cls),
            FromConfig("sep_token", format.Sep), FromConfig("pad_token", format.Pad), FromConfig("unk_token", format.Unk));

        // The model's own configs fill what the tokenizer leaves open and are checked against the rest.
        foreach (var facts in modelFacts)
        {
            foreach (var file in new[] { facts.GenAiConfig, facts.HfConfig })
            {
                if (file is null || file.Problem is not null) continue;
                specials = Reconcile(tokenizer, specials, file.File, "BOS", file.BosTokenId, s => s.Bos, (s, v) => s with { Bos = v });
                specials = Reconcile(tokenizer, specials, file.File, "EOS", file.EosTokenIds.Count > 0 ? file.EosTokenIds[0] : null, s => s.Eos, (s, v) => s with { Eos = v });
            }
        }
        tokenizer.Specials = specials;
        tokenizer.BosConvention = Convention(tokenizer, config, specials);
    }

    private static SpecialTokenIds Reconcile(TextTokenizer tokenizer, SpecialTokenIds specials, string file, string what, int? configId,
        Func<SpecialTokenIds, int?> get, Func<SpecialTokenIds, int?, SpecialTokenIds> set)
    {
        if (configId is not int id) return specials;
        if (get(specials) is int own)
        {
            if (own != id) tokenizer.AddNote($"{file} gives {what} id {id}, the tokenizer {own} (\"{tokenizer.Decode(own)}\"); using the tokenizer's");
            return specials;
        }
        if (id < 0 || id >= tokenizer.VocabSize)
        {
            tokenizer.AddNote($"{file} gives {what} id {id}, outside the tokenizer's vocabulary of {tokenizer.VocabSize}; ignored");
            return specials;
        }
        tokenizer.AddNote($"{what} id {id} from {file} (the tokenizer defines none)");
        return set(specials, id);
    }

    private static BosConvention Convention(TextTokenizer tokenizer, TokenizerConfig config, SpecialTokenIds specials)
    {
        if (specials.Bos is not int bos) return new(false, "the tokenizer defines no BOS token");
        if (config.AddBosToken is bool add) return new(add, $"{TokenizerConfig.ConfigName} add_bos_token = {(add ? "true" : "false")}");
        if (tokenizer.TemplatePrependsBos(bos) is bool template)
            return new(template, template ? "the tokenizer.json post-processor template starts with BOS" : "the tokenizer.json post-processor template does not start with BOS");
        bool convention = tokenizer.FormatPrependsBos;
        return new(convention, $"{tokenizer.Kind} convention: {(convention ? "BOS first" : "no BOS (GPT-2-style BOS = EOS is a separator; encoders start with CLS)")}");
    }
}
